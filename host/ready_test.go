package host

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
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

// TestReadyThroughLiveRebuild: once segd has caught up after its start,
// `ready` stays true while a rule changed at run time is rebuilt from the
// log (and so while a plugin's recovery rebuilds its segments, the same
// kind of rebuild): every other segment is served exactly meanwhile, and
// the rebuilding one answers 503 and is listed in `rebuilding`. It used to
// turn false, so a readiness probe took a serving host out for a rule
// change. With partitions as with one.
func TestReadyThroughLiveRebuild(t *testing.T) {
	t.Parallel()
	for _, p := range []int{1, 2} {
		t.Run(fmt.Sprintf("P=%d", p), func(t *testing.T) {
			t.Parallel()
			clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC))
			rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
			if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			ts := startServer(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
				Partitions: p, SnapshotInterval: -1, ruleRebuildGate: gate,
				Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
			ctx := context.Background()
			now := clock.Now().UnixMilli()
			ts.publish(t, rules.Batch{Events: []rules.Event{
				{User: "u1", Name: "pay", Time: now}, {User: "u1", Name: "pay", Time: now - 1000},
				{User: "u2", Name: "checkout", Time: now}}}, "b1")
			st, err := ts.client.Status(ctx)
			if err != nil || !st.Ready {
				t.Fatalf("after start: ready %v (%v)", st.Ready, err)
			}

			put, err := ts.client.PutRule(ctx, api.RulePutRequest{Definition: "id: pay_twice\ndid: {event: pay, count: \">= 2\", last: 5d}\n"})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				st, err = ts.client.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(st.Rebuilding) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pay_twice never shows rebuilding: %+v", st)
				}
				time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
			}
			if !st.Ready || st.Rebuilding[0].Segment != "pay_twice" {
				t.Errorf("while pay_twice rebuilds: ready %v, rebuilding %+v; want ready, pay_twice listed", st.Ready, st.Rebuilding)
			}
			for _, ps := range st.Partitions {
				if !ps.Ready {
					t.Errorf("partition %d not ready while pay_twice rebuilds", ps.Partition)
				}
			}
			if _, err := ts.client.SegmentCount(ctx, "pay_twice"); !client.IsUnavailable(err) {
				t.Errorf("pay_twice while rebuilding: %v; want 503", err)
			}
			if n, err := ts.client.SegmentCount(ctx, "checkout_3x_7d"); err != nil || n != 0 {
				t.Errorf("checkout_3x_7d while pay_twice rebuilds: %d, %v; want served", n, err)
			}
			if ok, err := ts.client.IsMember(ctx, "u1", "big_payer_2d"); err != nil || ok {
				t.Errorf("u1 in big_payer_2d while pay_twice rebuilds: %v, %v; want served, false", ok, err)
			}

			close(gate)
			deadline = time.Now().Add(30 * time.Second)
			for {
				r, err := ts.client.GetRule(ctx, "pay_twice")
				if err == nil && r.Serving == put.Revision && r.State == "active" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pay_twice not served in time: %+v, %v", r, err)
				}
				time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
			}
			if st, err := ts.client.Status(ctx); err != nil || !st.Ready || len(st.Rebuilding) != 0 {
				t.Fatalf("after the rebuild: %+v, %v", st, err)
			}
			if ok, err := ts.client.IsMember(ctx, "u1", "pay_twice"); err != nil || !ok {
				t.Fatalf("u1 in pay_twice after its rebuild: %v, %v", ok, err)
			}
		})
	}
}
