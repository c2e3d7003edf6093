package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// startWith starts segd on dataDir with the test rules (or src) and extra
// settings.
func startWith(t *testing.T, dataDir, src string, clock *engine.ManualClock, edit func(*Config)) *testServer {
	t.Helper()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Location: time.UTC, Clock: clock,
		SnapshotInterval: -1, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if edit != nil {
		edit(&cfg)
	}
	return startServer(t, cfg)
}

func (ts *testServer) status(t *testing.T) api.StatusReply {
	t.Helper()
	st, err := ts.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

// waitReady waits until segd reports ready, and checks it has applied the
// whole stream.
func (ts *testServer) waitReady(t *testing.T) api.StatusReply {
	t.Helper()
	info, err := ts.js.Stream(context.Background(), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	last := info.CachedInfo().State.LastSeq
	ts.waitApplied(t, last)
	if err := ts.srv.WaitRebuilt(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The status's sequence moves before the applied-sequence waiter that
	// readiness reads: poll until both agree.
	st := ts.status(t)
	for deadline := time.Now().Add(10 * time.Second); !st.Ready && time.Now().Before(deadline); st = ts.status(t) {
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	if !st.Ready || st.LastSeq != last {
		t.Fatalf("after applying the stream: ready %v, last_seq %d of %d", st.Ready, st.LastSeq, last)
	}
	return st
}

// feed publishes n random batches, moving the clock between them, and
// records them in ref.
func feed(t *testing.T, ts *testServer, ref *reference.Evaluator, rng *rand.Rand, n int, tag string) {
	t.Helper()
	for i := range n {
		b := randomBatch(rng, ts.clock.Now())
		ts.publish(t, b, fmt.Sprintf("%s-%d", tag, i))
		ref.Apply(b, ts.clock.Now())
		ts.clock.Advance(time.Duration(rng.IntN(5)+1) * time.Hour)
		if err := ts.srv.Engine().Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func analysisState(t *testing.T, ix *analysis.Index) (analysis.Stats, *api.AnalysisEventsReply) {
	t.Helper()
	today := ix.Today()
	q := analysis.EventsQuery{Events: []string{"checkout", "pay", "page_view"}, From: today - 10, To: today,
		Segments: []analysis.Segment{{ID: api.AllUsers}}}
	for _, m := range []string{api.MeasureUniques, api.MeasureTotal, "sum:amount", "at_least:2"} {
		pm, err := api.ParseMeasure(m)
		if err != nil {
			t.Fatal(err)
		}
		q.Measures = append(q.Measures, pm)
	}
	return ix.Stats(), ix.Events(q)
}

// TestSnapshotRestartMatchesFullReplay: a restart loads the snapshot
// written at Close, replays nothing, and answers exactly like the
// reference and like a full replay of the log, analysis included.
func TestSnapshotRestartMatchesFullReplay(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	segs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(testRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(3, 3))

	ts := startWith(t, dataDir, testRules, clock, nil)
	feed(t, ts, ref, rng, 8, "a")
	ts.close()

	ts = startWith(t, dataDir, testRules, clock, nil)
	st := ts.waitReady(t)
	if st.Snapshot == nil || st.Snapshot.Loaded == "" || st.Snapshot.LoadedSeq != st.LastSeq || st.ReplayFrom != st.LastSeq+1 {
		t.Fatalf("no snapshot loaded at restart: %+v %+v", st, st.Snapshot)
	}
	ts.compare(t, ref, segs, append(ref.Users(), "never-seen"))
	// It goes on from there: more batches, days passing.
	feed(t, ts, ref, rng, 6, "b")
	ts.compare(t, ref, segs, ref.Users())
	snapStats, snapEvents := analysisState(t, ts.srv.AnalysisIndex())
	snapStatus := ts.status(t)
	ts.close()

	full := startWith(t, dataDir, testRules, clock, func(c *Config) { c.NoSnapshots = true })
	fst := full.waitReady(t)
	if fst.ReplayFrom != 1 || fst.Snapshot != nil {
		t.Fatalf("NoSnapshots start: replay_from %d, snapshot %+v", fst.ReplayFrom, fst.Snapshot)
	}
	full.compare(t, ref, segs, ref.Users())
	fullStats, fullEvents := analysisState(t, full.srv.AnalysisIndex())
	if fullStats != snapStats || !reflect.DeepEqual(fullEvents, snapEvents) {
		t.Fatalf("analysis after snapshots %+v %+v\nafter a full replay %+v %+v", snapStats, snapEvents, fullStats, fullEvents)
	}
	if fst.Events != snapStatus.Events || fst.Batches != snapStatus.Batches || fst.Users != snapStatus.Users {
		t.Fatalf("counters after snapshots %+v, after a full replay %+v", snapStatus, fst)
	}
}

// TestCorruptSnapshotFallsBack flips bytes in the newest snapshot: segd
// reports it, loads the one before and replays the rest; with every
// snapshot damaged it replays the whole log. The answers stay exact.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	segs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(testRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(5, 5))

	ts := startWith(t, dataDir, testRules, clock, nil)
	feed(t, ts, ref, rng, 4, "a")
	older, err := ts.srv.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	olderSeq := ts.status(t).LastSeq
	feed(t, ts, ref, rng, 4, "b")
	ts.close() // writes the newest
	files, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "snapshot-*.segd"))
	if len(files) != 2 || files[0] != older {
		t.Fatalf("snapshot files %v, want %s and a newer one", files, older)
	}
	newest := files[1]
	data, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{len(data) / 3, len(data) / 2, len(data) - 7} {
		data[off] ^= 0x5a
	}
	if err := os.WriteFile(newest, data, 0o644); err != nil {
		t.Fatal(err)
	}

	ts = startWith(t, dataDir, testRules, clock, func(c *Config) { c.SnapshotKeep = 5 })
	st := ts.waitReady(t)
	if st.Snapshot.Loaded != older || st.Snapshot.LoadedSeq != olderSeq || st.ReplayFrom != olderSeq+1 {
		t.Fatalf("loaded %q at %d (replay from %d), want %s at %d", st.Snapshot.Loaded, st.Snapshot.LoadedSeq, st.ReplayFrom, older, olderSeq)
	}
	if len(st.Snapshot.Rejected) != 1 || !strings.Contains(st.Snapshot.Rejected[0], filepath.Base(newest)) ||
		!strings.Contains(st.Snapshot.Rejected[0], "checksum mismatch") {
		t.Fatalf("rejected = %q, want the newest with a checksum mismatch", st.Snapshot.Rejected)
	}
	ts.compare(t, ref, segs, append(ref.Users(), "never-seen"))
	ts.close()

	// Damage every snapshot (a truncation, a bad magic): a full replay.
	files, _ = filepath.Glob(filepath.Join(dataDir, "snapshots", "snapshot-*.segd"))
	for i, f := range files {
		data, _ := os.ReadFile(f)
		if i%2 == 0 {
			data = data[:len(data)-100]
		} else {
			copy(data, "NOTSNAP!")
		}
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ts = startWith(t, dataDir, testRules, clock, nil)
	st = ts.waitReady(t)
	if st.Snapshot.Loaded != "" || st.ReplayFrom != 1 || len(st.Snapshot.Rejected) != len(files) {
		t.Fatalf("with every snapshot damaged: loaded %q, replay from %d, rejected %q", st.Snapshot.Loaded, st.ReplayFrom, st.Snapshot.Rejected)
	}
	ts.compare(t, ref, segs, ref.Users())
}

// TestNotABatchGoesToTheDeadLetterStream: such a message is stored in
// SEGD_DLQ with the reason, acked, and counted.
func TestNotABatchGoesToTheDeadLetterStream(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	ts := startWith(t, t.TempDir(), testRules, clock, nil)
	ctx := context.Background()
	ack, err := ts.js.Publish(ctx, "segd.events.junk", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, ack.Sequence)
	st := ts.status(t)
	if st.NotBatches != 1 || st.DeadLetters != 1 || st.DeadLetterStream != bus.DeadLetterStream {
		t.Fatalf("status %+v", st)
	}
	dlq, err := ts.js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "hello" || msg.Subject != "segd.dlq.events.junk" || msg.Header.Get(bus.HeaderDLQReason) == "" ||
		msg.Header.Get(bus.HeaderDLQSeq) != fmt.Sprint(ack.Sequence) {
		t.Fatalf("dead letter %s %q %v", msg.Subject, msg.Data, msg.Header)
	}
}

// TestChangedRuleRebuildsFromTheLog changes rules between two runs: one
// rule is changed, a static segment redefined, a rule that reads the
// changed one added. The second start loads the snapshot for the unchanged
// rules (which it does not replay) and rebuilds only the others from the
// retained log; once ready every segment is exact against the reference,
// goes on exactly with new batches, and answers like a full replay.
func TestChangedRuleRebuildsFromTheLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dataDir := t.TempDir()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	rng := rand.New(rand.NewPCG(9, 9))
	first := testRules + "  - id: vip\n    static: true\n"
	segs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(first)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	ts := startWith(t, dataDir, first, clock, nil)
	feed(t, ts, ref, rng, 4, "a")
	for i, mode := range []string{api.UploadAppend, api.UploadReplace, api.UploadAppend} {
		users := []string{fmt.Sprintf("u-%d", rng.IntN(30)), fmt.Sprintf("u-%d", rng.IntN(30)), fmt.Sprintf("new-%d", i)}
		if _, err := ts.client.Upload(ctx, "vip", users, mode); err != nil {
			t.Fatal(err)
		}
	}
	feed(t, ts, ref, rng, 4, "b")
	ts.close()

	changed := strings.Replace(first, `count: ">= 3", last: 7d`, `count: ">= 2", last: 5d`, 1)
	changed = strings.Replace(changed, "  - id: vip\n", "  - id: vip\n    description: redefined\n", 1)
	changed += "  - id: added\n    all: [{in_segment: checkout_3x_7d}, {not: {profile: 'age < 25'}}, {did_not: {event: pay, last: 1d}}]\n"
	if !strings.Contains(changed, `count: ">= 2", last: 5d`) {
		t.Fatal("the test rule was not changed")
	}
	segs2, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(changed)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts = startWith(t, dataDir, changed, clock, nil)
	st := ts.waitReady(t)
	rebuilt := []string{"added", "checkout_3x_7d", "vip"}
	if st.Snapshot.Loaded == "" || st.ReplayFrom != st.Snapshot.LoadedSeq+1 || len(st.Snapshot.Rejected) != 0 ||
		!slices.Equal(slices.Sorted(slices.Values(st.Snapshot.Rebuilt)), rebuilt) || len(st.Rebuilding) != 0 {
		t.Fatalf("after a rule change: loaded %q at %d, replay from %d, rejected %q, rebuilt %q, rebuilding %v",
			st.Snapshot.Loaded, st.Snapshot.LoadedSeq, st.ReplayFrom, st.Snapshot.Rejected, st.Snapshot.Rebuilt, st.Rebuilding)
	}
	list, err := ts.client.Segments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range list {
		if info.Status != "active" || info.Rebuild != nil {
			t.Fatalf("segment after the rebuild: %+v", info)
		}
	}
	// The reference of the new rules sees the same log, applied now (as a
	// replay applies it).
	ref2 := reference.New(segs2, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	log, err := bus.ReadLog(ctx, ts.js, bus.EventsStream, 1, st.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := log.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if up := msg.Upload; up != nil {
			ref2.Upload(up.Segment, up.Users, up.Replace)
		} else {
			ref2.Apply(msg.Batch, clock.Now())
		}
	}
	log.Close()
	ts.compare(t, ref2, segs2, append(ref2.Users(), "never-seen"))
	// It goes on exactly.
	feed(t, ts, ref2, rng, 4, "c")
	ts.compare(t, ref2, segs2, ref2.Users())
	answers := map[string][]string{}
	for _, s := range segs2 {
		if answers[s.ID], err = ts.srv.Engine().Members(s.ID); err != nil {
			t.Fatal(err)
		}
	}
	ts.close()

	// A full replay of the log gives the same answers.
	full := startWith(t, dataDir, changed, clock, func(c *Config) { c.NoSnapshots = true })
	if fst := full.waitReady(t); fst.ReplayFrom != 1 || fst.Snapshot != nil {
		t.Fatalf("NoSnapshots start: replay_from %d, snapshot %+v", fst.ReplayFrom, fst.Snapshot)
	}
	for _, s := range segs2 {
		got, err := full.srv.Engine().Members(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, answers[s.ID]) {
			t.Fatalf("segment %s: after the rebuild %v, after a full replay %v", s.ID, answers[s.ID], got)
		}
	}
	full.close()

	// The next start loads the snapshot of the new rules and rebuilds
	// nothing.
	ts = startWith(t, dataDir, changed, clock, nil)
	if st := ts.waitReady(t); st.Snapshot.Loaded == "" || len(st.Snapshot.Rebuilt) != 0 {
		t.Fatalf("the snapshot of the new rules was not loaded whole: %+v", st.Snapshot)
	}
	ts.compare(t, ref2, segs2, ref2.Users())
}
