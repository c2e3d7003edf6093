package host

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
)

// startFeedServer starts segd with the segment test rules and a change
// feed backlog bound of backlog bytes.
func startFeedServer(t *testing.T, dataDir string, backlog int) *testServer {
	t.Helper()
	rulesFile := filepath.Join(dataDir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(segmentTestRules), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	return startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
		FeedBacklog: backlog, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
}

func userRange(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%07d", prefix, i))
	}
	return out
}

// changeKey identifies a delivered change: its message and place in it.
type changeKey struct {
	msg   uint64
	index int
}

// consumeAll reads the whole feed of one segment through ConsumeChanges
// until it has seen want changes, and replays them onto an empty set: an
// enter of a member or an exit of a non-member is a duplicate or a lost
// change. It returns the members the feed says the segment has.
func consumeAll(t *testing.T, ts *testServer, segment string, want int) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	members := map[string]bool{}
	seen := map[changeKey]bool{}
	var bad error
	enough := make(chan struct{})
	c, err := client.ConsumeChanges(ctx, ts.js, client.ChangeConsumerOptions{Segments: []string{segment}},
		func(m client.ChangeMsg) error {
			mu.Lock()
			defer mu.Unlock()
			k := changeKey{m.StreamSeq, m.Index}
			switch {
			case seen[k]:
				bad = fmt.Errorf("change %+v delivered twice", k)
			case m.Change.Change == api.ChangeEnter && members[m.User]:
				bad = fmt.Errorf("%s entered %s twice (message %d)", m.User, segment, m.StreamSeq)
			case m.Change.Change == api.ChangeExit && !members[m.User]:
				bad = fmt.Errorf("%s left %s without entering (message %d)", m.User, segment, m.StreamSeq)
			}
			seen[k] = true
			members[m.User] = m.Change.Change == api.ChangeEnter
			if !members[m.User] {
				delete(members, m.User)
			}
			if len(seen) == want {
				close(enough)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	select {
	case <-enough:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the consumer saw %d changes, want %d (feed %+v)", len(seen), want, ts.srv.ChangeFeed().Stats())
	}
	c.Stop()
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatal(bad)
	}
	return members
}

// TestChangeFeedLargeUploadsExactlyOnce uploads a million users to a
// static segment, then replaces them with a million that half overlap:
// over two million changes, which used to overflow the feed's queue of a
// million and be dropped. Every change reaches a consumer exactly once, the
// feed's replay equals the segment, and the backlog stayed within its bound.
func TestChangeFeedLargeUploadsExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads two million ids")
	}
	t.Parallel()
	const backlog = 256 << 10 // under one upload part's changes
	ts := startFeedServer(t, t.TempDir(), backlog)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := ts.client.Upload(ctx, "newsletter", userRange("u", 0, 1_000_000), api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	r, err := ts.client.Upload(ctx, "newsletter", userRange("u", 500_000, 1_500_000), api.UploadReplace)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != 1_000_000 {
		t.Fatalf("size %d after the replace, want 1000000", r.Size)
	}
	if err := ts.srv.ChangeFeed().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := ts.srv.ChangeFeed().Stats()
	// The exact count depends on where the client split the replace; each
	// part's users leave and enter again (docs/api.md).
	total := int(st.Published)
	if total < 2_000_000 || st.Discarded != 0 || st.Unpublishable != 0 {
		t.Fatalf("feed after the uploads: %+v", st)
	}
	members := consumeAll(t, ts, "newsletter", total)
	if len(members) != 1_000_000 {
		t.Fatalf("the feed replays to %d members, the segment has 1000000", len(members))
	}
	for _, u := range []string{"u0500000", "u1499999"} {
		if !members[u] {
			t.Fatalf("the feed lost %s", u)
		}
	}
	if st.MaxBacklogBytes > backlog+(64<<10)+1024 {
		t.Fatalf("the feed's backlog reached %d bytes, bound %d", st.MaxBacklogBytes, backlog)
	}
	status, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.Feed == nil || status.Feed.Published != st.Published || status.Feed.Backlog != 0 || status.Feed.MaxBacklogBytes != backlog {
		t.Fatalf("status.feed %+v, feed %+v", status.Feed, st)
	}
}

// refuseChanges makes JetStream refuse the change feed's publishes: no
// stream takes segd.changes.> any more (a restart's EnsureChangesStream
// puts the subjects back).
func refuseChanges(t *testing.T, ts *testServer) {
	t.Helper()
	ctx := context.Background()
	s, err := ts.js.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"elsewhere.>"}
	if _, err := ts.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestChangeFeedStopWhileRefusedRecovers stops segd while JetStream refuses
// the change feed and ingest waits on a full backlog: the stop is quick, no
// snapshot covers the changes not stored, and the next start publishes
// them, so a consumer sees every change exactly once.
func TestChangeFeedStopWhileRefusedRecovers(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	ts := startFeedServer(t, dataDir, 64<<10)
	ctx := context.Background()
	if _, err := ts.client.Upload(ctx, "newsletter", userRange("a", 0, 5000), api.UploadAppend); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.srv.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	refuseChanges(t, ts)
	go func() {
		// Applying it fills the backlog and waits; its reply does not matter.
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, _ = ts.client.Upload(uctx, "newsletter", userRange("b", 0, 30_000), api.UploadAppend)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for ts.srv.ChangeFeed().Stats().WaitingSince.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("ingest never waited for the refused feed: %+v", ts.srv.ChangeFeed().Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if path, err := ts.srv.Snapshot(sctx); err == nil {
		t.Fatalf("a snapshot (%s) was written past changes not stored", path)
	}
	cancel()
	start := time.Now()
	ts.close()
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("stopping took %s with the feed refused", took)
	}

	ts = startFeedServer(t, dataDir, 64<<10)
	status, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, status.ReplayTo)
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := ts.srv.ChangeFeed().Flush(fctx); err != nil {
		t.Fatal(err)
	}
	members := consumeAll(t, ts, "newsletter", 35_000)
	if len(members) != 35_000 || !members["a0004999"] || !members["b0029999"] {
		t.Fatalf("the feed replays to %d members, want 35000", len(members))
	}
}
