package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
	"github.com/segd/segd/host/engine"
)

// startStaticSegd runs segd with one static segment, beta, and a change
// feed backlog of one message, so that a feed JetStream refuses holds
// ingest up at once.
func startStaticSegd(t *testing.T) (string, *client.Client, jetstream.JetStream) {
	t.Helper()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("segments:\n  - id: beta\n    static: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := host.Start(context.Background(), host.Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		RulePaths: []string{rulesFile}, Clock: engine.NewManualClock(time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)),
		FeedBacklog: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), client.New(nc), js
}

func segmentSize(t *testing.T, c *client.Client, seg string) uint64 {
	t.Helper()
	r, err := c.Segment(context.Background(), seg)
	if err != nil {
		t.Fatal(err)
	}
	return r.Size
}

// TestSegmentUploadCommand: an upload with no ids is refused unless
// --allow-empty (replace is the default: it used to empty the segment
// silently); an upload stored but not applied within --timeout is reported
// as stored and being applied, not as a failure, and is then applied.
func TestSegmentUploadCommand(t *testing.T) {
	t.Parallel()
	url, c, js := startStaticSegd(t)
	out, err := runSegd(t, "segment", "upload", "beta", "u1", "u2", "--nats", url)
	if err != nil || !strings.Contains(out, "beta now has 2 members") {
		t.Fatalf("upload: %q %v", out, err)
	}
	out, err = runSegd(t, "segment", "upload", "beta", "--nats", url)
	if err == nil || !strings.Contains(err.Error(), "--allow-empty") {
		t.Fatalf("upload with no ids: %q %v, want a refusal naming --allow-empty", out, err)
	}
	if n := segmentSize(t, c, "beta"); n != 2 {
		t.Fatalf("the refused upload changed beta: %d members", n)
	}
	out, err = runSegd(t, "segment", "upload", "beta", "--allow-empty", "--nats", url)
	if err != nil || !strings.Contains(out, "beta now has 0 members") {
		t.Fatalf("upload --allow-empty: %q %v", out, err)
	}

	// JetStream refuses the change feed: the first upload's changes wait in
	// the backlog, the second waits for room before it is applied.
	ctx := context.Background()
	s, err := js.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	moved := cfg
	moved.Subjects = []string{"elsewhere.>"}
	if _, err := js.UpdateStream(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if out, err := runSegd(t, "segment", "upload", "beta", "a", "--append", "--nats", url); err != nil || !strings.Contains(out, "now has 1 members") {
		t.Fatalf("upload: %q %v", out, err)
	}
	out, err = runSegd(t, "segment", "upload", "beta", "b", "--append", "--timeout", "2s", "--nats", url)
	if err != nil || !strings.Contains(out, "is stored (events stream sequence") || !strings.Contains(out, "applying") {
		t.Fatalf("upload not applied in time: %q %v, want it reported as stored and being applied", out, err)
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for segmentSize(t, c, "beta") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the accepted upload was never applied")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}
