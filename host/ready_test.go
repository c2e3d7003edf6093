package host

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

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// lockedBuffer is a log destination safe for segd's goroutines and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// waitLog waits, with a deadline, until the log holds s.
func waitLog(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// TestReadyLoggedOnce: segd logs "segd is ready" once, at start, when
// there is nothing to replay: an empty stream, and a restart with nothing
// new after the snapshot (it used to log "replaying the event log" every
// 5 s forever instead).
func TestReadyLoggedOnce(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	start := func() (*testServer, *lockedBuffer) {
		var log lockedBuffer
		ts := startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
			Logger: slog.New(slog.NewTextHandler(&log, nil))})
		return ts, &log
	}
	ts, log := start()
	waitLog(t, log, "segd is ready")
	ts.publish(t, rules.Batch{Events: []rules.Event{{User: "u1", Name: "checkout", Time: clock.Now().UnixMilli()}}}, "one")
	ts.close()

	ts, log = start()
	waitLog(t, log, "segd is ready")
	if _, err := ts.client.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.close()
	if n := strings.Count(log.String(), "segd is ready"); n != 1 {
		t.Errorf("logged ready %d times:\n%s", n, log.String())
	}
	if strings.Contains(log.String(), "replaying the event log") {
		t.Errorf("logged replay progress with nothing to replay:\n%s", log.String())
	}
}
