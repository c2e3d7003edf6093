package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runWatch runs segd watch until the returned stop is called; out and
// errOut collect stdout and stderr.
func runWatch(t *testing.T, args ...string) (out, errOut *syncBuffer, stop func() error) {
	t.Helper()
	out, errOut = &syncBuffer{}, &syncBuffer{}
	cmd := newRootCommand()
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SetArgs(append([]string{"watch"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	return out, errOut, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop")
			return nil
		}
	}
}

// waitFor waits until b holds s, with a deadline.
func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in time; got:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// TestWatchSaysWhereItStarts: watch says it is connected and where in the
// feed it starts; --from-start replays the changes kept; an unknown segment
// is an error at once.
func TestWatchSaysWhereItStarts(t *testing.T) {
	t.Parallel()
	url := startSegd(t)

	_, errOut, stop := runWatch(t, "buyers", "--nats", url)
	waitFor(t, errOut, "connected to ")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := errOut.String(); !strings.Contains(s, "watching buyers, from the feed's end (after message") {
		t.Errorf("stderr: %s", s)
	}

	out, errOut, stop := runWatch(t, "buyers", "--from-start", "--nats", url)
	waitFor(t, out, "entered buyers  u1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := errOut.String(); !strings.Contains(s, "from the oldest change kept (message 1 of") {
		t.Errorf("stderr: %s", s)
	}

	out, errOut, stop = runWatch(t, "--since", "2h", "--nats", url)
	waitFor(t, out, "entered buyers  u1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := errOut.String(); !strings.Contains(s, "watching every segment, from the first change at or after") {
		t.Errorf("stderr: %s", s)
	}

	// At once: runSegd has no way to stop a watch that started.
	if _, err := runSegd(t, "watch", "buyers", "nope", "--nats", url); err == nil || !strings.Contains(err.Error(), `segment "nope" is not defined`) {
		t.Fatalf("unknown segment: %v", err)
	}
	if _, err := runSegd(t, "watch", "--since", "yesterday", "--nats", url); err == nil || !strings.Contains(err.Error(), `--since "yesterday"`) {
		t.Fatalf("bad --since: %v", err)
	}
}
