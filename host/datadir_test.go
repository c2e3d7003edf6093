package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
)

// TestDataDirLocked starts two servers on one data dir: the second must
// refuse, naming the first (its pid, host and lock file), and start once
// the first has closed.
func TestDataDirLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir, NoListen: true, RulePaths: []string{rulesFile},
		Clock:  engine.NewManualClock(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	first, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second, err := Start(context.Background(), cfg)
	if err == nil {
		second.Close()
		t.Fatal("a second server started on a data dir in use")
	}
	host, _ := os.Hostname()
	for _, want := range []string{"in use", "pid " + strconv.Itoa(os.Getpid()), host, filepath.Join(dir, "segd.lock")} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The refused start touched nothing: the first still serves.
	if _, err := first.Snapshot(context.Background()); err != nil {
		t.Fatalf("the first server after the refused start: %v", err)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start after the holder closed: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}
