package host

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// TestSnapshotSkippedWhenItWouldNotFit: a snapshot estimated to need more
// memory than the limit (twice the last one's size) is not taken: it is
// counted and explained in status and metrics, no file is written, and
// ingest and reads go on.
func TestSnapshotSkippedWhenItWouldNotFit(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	segs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(testRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(9, 9))
	dataDir := t.TempDir()
	ts := startWith(t, dataDir, testRules, clock, func(c *Config) { c.SnapshotMemoryLimit, c.Metrics = 1, "127.0.0.1:0" })
	feed(t, ts, ref, rng, 3, "a")
	// The first snapshot of a run has no size to estimate from: taken.
	first, err := ts.srv.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	feed(t, ts, ref, rng, 3, "b")
	if _, err := ts.srv.Snapshot(context.Background()); !errors.Is(err, errSkipped) {
		t.Fatalf("second snapshot: err = %v, want skipped", err)
	}
	st := ts.status(t).Snapshot
	if st.Written != 1 || st.Skipped != 1 || st.Failures != 0 || !strings.Contains(st.LastSkip, "more than the configured limit") {
		t.Fatalf("snapshot status %+v, want 1 written, 1 skipped with the reason", st)
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "snapshot-*.segd"))
	if len(files) != 1 || files[0] != first {
		t.Fatalf("files %v, want only %s", files, first)
	}
	if got, ok := metricValue(scrape(t, ts.srv.MetricsAddr()), "segd_snapshots_skipped_total"); !ok || got != 1 {
		t.Fatalf("segd_snapshots_skipped_total = %v (%v), want 1", got, ok)
	}
	feed(t, ts, ref, rng, 1, "c") // ingest goes on
	ts.compare(t, ref, segs, ref.Users())
	ts.close() // its snapshot is skipped too

	// After a restart, the first snapshot is estimated from the one
	// loaded.
	ts = startWith(t, dataDir, testRules, clock, func(c *Config) { c.SnapshotMemoryLimit = 1 })
	if st := ts.waitReady(t); st.Snapshot.Loaded != first {
		t.Fatalf("loaded %q, want %s", st.Snapshot.Loaded, first)
	}
	ts.compare(t, ref, segs, ref.Users())
	feed(t, ts, ref, rng, 1, "d")
	if _, err := ts.srv.Snapshot(context.Background()); !errors.Is(err, errSkipped) {
		t.Fatalf("first snapshot after a restart: err = %v, want skipped", err)
	}
}

// TestShutdownSnapshotIsBounded: the snapshot of Close gives up at its
// deadline instead of holding the stop, writes no file, and Close still
// succeeds; the next start loads the previous snapshot and replays the
// log after it, exactly. A Close with nothing applied since the last
// snapshot writes none.
func TestShutdownSnapshotIsBounded(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	segs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(testRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(10, 10))
	dataDir := t.TempDir()
	glob := filepath.Join(dataDir, "snapshots", "snapshot-*.segd")

	ts := startWith(t, dataDir, testRules, clock, func(c *Config) { c.ShutdownSnapshotTimeout = time.Nanosecond })
	feed(t, ts, ref, rng, 3, "a")
	older, err := ts.srv.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	olderSeq := ts.status(t).LastSeq
	feed(t, ts, ref, rng, 3, "b")
	ts.nc.Close()
	if err := ts.srv.Close(); err != nil {
		t.Fatalf("Close with the shutdown snapshot past its deadline: %v", err)
	}
	if files, _ := filepath.Glob(glob); len(files) != 1 || files[0] != older {
		t.Fatalf("files after Close %v, want only %s", files, older)
	}

	ts = startWith(t, dataDir, testRules, clock, nil)
	st := ts.waitReady(t)
	if st.Snapshot.Loaded != older || st.ReplayFrom != olderSeq+1 {
		t.Fatalf("loaded %q, replay from %d; want %s and the log after %d", st.Snapshot.Loaded, st.ReplayFrom, older, olderSeq)
	}
	ts.compare(t, ref, segs, ref.Users())
	newest, err := ts.srv.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ts.close() // nothing applied since: no new file
	if files, _ := filepath.Glob(glob); len(files) != 2 || files[1] != newest {
		t.Fatalf("files after a Close with nothing new %v, want %s and %s", files, older, newest)
	}
}
