package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestLogSinkBlockedWriter: a writer that never returns (nobody reads the
// pipe) blocks neither Write nor Flush past its timeout.
func TestLogSinkBlockedWriter(t *testing.T) {
	t.Parallel()
	r, w := io.Pipe() // nobody reads r: every Write blocks
	defer r.Close()   // unblocks the sink's goroutine at the end
	s := newLogSink(w)
	start := time.Now()
	for range logQueueLines * 2 {
		if n, err := s.Write([]byte("a log line\n")); n != len("a log line\n") || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if s.Flush(50 * time.Millisecond) {
		t.Fatal("Flush reported the lines out while the writer is blocked")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("writes and flush took %v with a blocked writer", d)
	}
}

// failingWriter fails every write.
type failingWriter struct{ n int }

func (f *failingWriter) Write([]byte) (int, error) { f.n++; return 0, errors.New("broken pipe") }

func TestLogSinkFailingWriter(t *testing.T) {
	t.Parallel()
	fw := &failingWriter{}
	s := newLogSink(fw)
	for range 10 {
		if _, err := s.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Flush(10 * time.Second) {
		t.Fatal("Flush timed out with a failing writer")
	}
	if fw.n != 10 {
		t.Fatalf("writer saw %d writes, want 10", fw.n)
	}
}

// TestLogSinkDropCount: lines dropped while the writer was stuck are
// reported once it writes again, and the lines kept come out in order.
func TestLogSinkDropCount(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	gate := make(chan struct{})
	s := newLogSink(writerFunc(func(p []byte) (int, error) { <-gate; return out.Write(p) }))
	for i := range logQueueLines + 10 {
		s.Write([]byte(strings.Repeat("l", 1+i%3) + "\n"))
	}
	close(gate)
	if !s.Flush(10 * time.Second) {
		t.Fatal("Flush timed out")
	}
	s.Write([]byte("last\n"))
	if !s.Flush(10 * time.Second) {
		t.Fatal("Flush timed out")
	}
	got := out.String()
	if !strings.Contains(got, "log lines dropped") || !strings.HasSuffix(got, "last\n") {
		t.Fatalf("output does not report the dropped lines or lost the last one: ...%s", got[max(0, len(got)-200):])
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
