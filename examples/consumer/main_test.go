package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
	"github.com/segd/segd/host/engine"
)

// syncBuffer is a bytes.Buffer safe to write from the consumer while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The example service reacts to users entering and leaving a segment of a
// real segd.
func TestConsumerReacts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("segments:\n  - {id: beta, static: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := host.Start(context.Background(), host.Config{DataDir: dir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, srv.ClientURL(), "beta", "reminders-beta", out) }()
	waitFor(t, out, "watching beta")

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := client.New(nc)
	if _, err := c.Upload(context.Background(), "beta", []string{"u1", "u2"}, api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "send a reminder to u1 (entered beta")
	waitFor(t, out, "send a reminder to u2 (entered beta")
	if _, err := c.Upload(context.Background(), "beta", []string{"u2"}, api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "cancel the reminder for u1 (left beta)")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "cancel the reminder for u2") {
		t.Fatalf("u2 stayed, yet:\n%s", out)
	}
}

// waitFor waits until the output holds want, with a deadline.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", want, out)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronization
	}
}
