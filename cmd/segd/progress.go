package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// elapsedAfter is how long a request runs before the CLI shows that it
// waits.
const elapsedAfter = time.Second

// showElapsed, when w is a terminal, shows "what… 3s" on it once a
// request has taken elapsedAfter, updated every second, until the returned
// stop clears the line. Elsewhere (a pipe, a file, a test) it shows
// nothing: progress is for people.
func showElapsed(w io.Writer, what string) (stop func()) {
	if !isTerminal(w) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTimer(elapsedAfter)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-done:
				if shown {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
				shown = true
				fmt.Fprintf(w, "\r\033[K%s… %s", what, time.Since(start).Round(time.Second))
				t.Reset(time.Second)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// newBytesBar is a progress bar of total bytes on w, or nil when w is not
// a terminal.
func newBytesBar(w io.Writer, total int64, what string) *progressbar.ProgressBar {
	if !isTerminal(w) {
		return nil
	}
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(65*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprint(w, "\n") }))
}
