package main

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// logSink hands log lines to a writer (segd's stderr) on its own goroutine,
// so that logging never blocks or fails segd: a reader that stopped reading
// (a paused pager, a full pipe) or is gone (`| tee` killed by the same
// Ctrl-C) cannot hold up ingest or shutdown. Lines that do not fit in the
// queue are counted and dropped, and the count is written once the writer
// takes lines again. The goroutine lives as long as the process.
type logSink struct {
	w       io.Writer
	queue   chan logEntry
	dropped atomic.Uint64
}

// logEntry is a line to write, or a flush marker (flushed set).
type logEntry struct {
	line    []byte
	flushed chan struct{}
}

// logQueueLines bounds the lines waiting for the writer: a minute of
// segd's info-level log is a few dozen lines.
const logQueueLines = 4096

func newLogSink(w io.Writer) *logSink {
	s := &logSink{w: w, queue: make(chan logEntry, logQueueLines)}
	go s.run()
	return s
}

// Write queues a copy of p and never fails: an error here could only be
// ignored, as slog does, or abort what was being logged.
func (s *logSink) Write(p []byte) (int, error) {
	select {
	case s.queue <- logEntry{line: append([]byte(nil), p...)}:
	default:
		s.dropped.Add(1)
	}
	return len(p), nil
}

func (s *logSink) run() {
	for e := range s.queue {
		if e.flushed != nil {
			close(e.flushed)
			continue
		}
		if n := s.dropped.Swap(0); n > 0 {
			fmt.Fprintf(s.w, "segd: %d log lines dropped: the log output was not being read\n", n)
		}
		// An error (EPIPE: nobody reads any more) loses this line only.
		_, _ = s.w.Write(e.line)
	}
}

// Flush waits until the lines written before it are out, or timeout
// passed; it reports whether they are out.
func (s *logSink) Flush(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	done := make(chan struct{})
	select {
	case s.queue <- logEntry{flushed: done}:
	case <-t.C:
		return false
	}
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
