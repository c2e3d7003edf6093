package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
)

// TestReplicasOutOfRange: --replicas past JetStream's 5 is refused at
// start naming the flag, and more replicas than a single server has nodes
// is JetStream's error at start, not a server that half works.
func TestReplicasOutOfRange(t *testing.T) {
	t.Parallel()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		replicas int
		want     string
	}{
		{6, "--replicas 6: want 1 to 5"},
		{-1, "--replicas -1: want 1 to 5"},
		{3, "replicas > 1 not supported"},
	} {
		cfg := Config{DataDir: t.TempDir(), NoListen: true, RulePaths: []string{rulesFile}, Replicas: tc.replicas,
			Clock:  engine.NewManualClock(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)),
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Start(ctx, cfg)
		cancel()
		if err == nil {
			s.Close()
			t.Fatalf("--replicas %d on one embedded server: started", tc.replicas)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("--replicas %d: %v; want it to say %q", tc.replicas, err, tc.want)
		}
		t.Logf("--replicas %d: %v", tc.replicas, err)
	}
}
