package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// chanSource is a RebuildSource fed by the test: idle receives a value
// when Next waits for a message nobody has sent yet.
type chanSource struct {
	ch   chan *ingest.Message
	idle chan struct{}
}

func (s *chanSource) Next(ctx context.Context) (*ingest.Message, error) {
	var m *ingest.Message
	var ok bool
	select {
	case m, ok = <-s.ch:
	case s.idle <- struct{}{}:
		m, ok = <-s.ch
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !ok {
		return nil, io.EOF
	}
	return m, nil
}

// rebuildRules are randomRules with checkout_3x_7d and converted changed
// (so young_payers and not_young_payers, which read converted, are stale
// too), the static beta redefined and a rule added.
func rebuildRules(t *testing.T) string {
	t.Helper()
	src := randomRules
	for _, r := range [][2]string{
		{`count: ">= 3", last: 7d}`, `count: ">= 2", last: 5d}`},
		{`within: 12h, last: 3d}`, `within: 10h, last: 3d}`},
		{"  - id: beta\n    static: true\n", "  - id: beta\n    description: redefined\n    static: true\n" +
			"  - id: added\n    all: [{in_segment: big_payer_2d}, {not: {profile: city == nil}}, {did_not: {event: search, last: 2d}}]\n"},
	} {
		next := strings.Replace(src, r[0], r[1], 1)
		if next == src {
			t.Fatalf("rule text %q not found", r[0])
		}
		src = next
	}
	return src
}

// rebuildBatch is a random batch whose events every clock of the test
// accepts (none ahead of the clock, none near the retention), so that a
// snapshot's state and a full replay of the log agree.
func rebuildBatch(rng *rand.Rand, now, start time.Time) rules.Batch {
	b := randomEvents(rng, now, []string{"checkout", "pay", "page_view", "search", "other"}, []string{"shoes", "bags", "hats"})
	b.Events = slices.DeleteFunc(b.Events, func(ev rules.Event) bool {
		return ev.Time > now.UnixMilli() || ev.Time < start.AddDate(0, 0, -10).UnixMilli()
	})
	return b
}

// TestRebuildChangedRules: an engine's state is snapshotted, the rules
// change (two rules, two that read one of them, a static segment, a new
// rule), and a new engine restores the unchanged segments and rebuilds the
// others from the log while live messages arrive. Meanwhile the rebuilt
// segments are unavailable with progress in the status, the others are
// served; once done, every segment is exact against the reference and
// goes on exactly with the clock and further batches.
func TestRebuildChangedRules(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			testRebuild(t, seed)
		})
	}
}

func testRebuild(t *testing.T, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 11))
	opts := rules.Options{MaxWindowDays: testRetentionDays}
	segs1, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(randomRules)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	segs2, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(rebuildRules(t))}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 10, 28, 22, 0, 0, 0, time.UTC)
	clock := NewManualClock(start)
	cfg1 := Config{Segments: segs1, Clock: clock, TickInterval: time.Hour, RetentionDays: testRetentionDays}
	cfg2 := cfg1
	cfg2.Segments = segs2
	ref := reference.New(segs2, time.UTC, DefaultMaxFutureSkew, testRetentionDays)

	var log []*ingest.Message
	next := func() *ingest.Message {
		msg := &ingest.Message{Seq: uint64(len(log) + 1)}
		if rng.IntN(6) == 0 {
			users := []string{fmt.Sprintf("u%d", rng.IntN(45)), fmt.Sprintf("u%d", rng.IntN(45))}
			msg.Upload = &ingest.StaticUpload{Segment: "beta", Users: users, Replace: rng.IntN(2) == 0}
			ref.Upload("beta", users, msg.Upload.Replace)
		} else {
			msg.Batch = rebuildBatch(rng, clock.Now(), start)
			ref.Apply(msg.Batch, clock.Now())
		}
		log = append(log, msg)
		return msg
	}
	check := func(e *Engine, when string) {
		t.Helper()
		for _, s := range segs2 {
			want := ref.Members(s.ID, clock.Now())
			if got := members(t, e, s.ID); !slices.Equal(got, want) {
				t.Fatalf("%s: segment %s\n got %v\nwant %v", when, s.ID, got, want)
			}
		}
	}

	// The first run, with the old rules.
	r1 := run(New(cfg1))
	for range 30 {
		clock.Advance(time.Duration(rng.IntN(4*60)+1) * time.Minute)
		if err := r1.e.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		m := *next()
		if err := r1.e.Apply(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	data := snapshotOf(t, r1.e)
	r1.stop()
	toSeq := uint64(len(log))

	// The second, with the new rules: restore, start the rebuild.
	clock.Advance(3 * time.Hour)
	e := New(cfg2)
	res, err := e.Restore(snapio.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	wantStale := []string{"added", "beta", "checkout_3x_7d", "converted", "not_young_payers", "young_payers"}
	if !slices.Equal(res.Stale, wantStale) {
		t.Fatalf("stale %v, want %v", res.Stale, wantStale)
	}
	rb, err := e.StartRebuild([]string{"converted", "checkout_3x_7d", "added", "beta"})
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(rb.Segments()))
	if !slices.Equal(got, wantStale) || rb.ToSeq() != toSeq {
		t.Fatalf("rebuilding %v to %d, want %v to %d", got, rb.ToSeq(), wantStale, toSeq)
	}
	rb.chunk = 4
	r2 := run(e)
	defer r2.stop()
	src := &chanSource{ch: make(chan *ingest.Message), idle: make(chan struct{})}
	type result struct {
		res RebuildResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := rb.Run(ctx, src)
		done <- result{res, err}
	}()
	for _, m := range log[:8] {
		src.ch <- m
	}
	<-src.idle // two chunks applied, waiting for the ninth message

	st := e.Status()
	if len(st.Rebuilding) != len(wantStale) || st.Rebuilding[0].Seq != 8 || st.Rebuilding[0].ToSeq != toSeq {
		t.Fatalf("status while rebuilding: %+v", st.Rebuilding)
	}
	for _, info := range e.Segments() {
		rebuilding := slices.Contains(wantStale, info.ID)
		if rebuilding != (info.Status == "rebuilding") || rebuilding != (info.Rebuild != nil) {
			t.Fatalf("segment %s while rebuilding: %+v", info.ID, info)
		}
	}
	if _, err := e.IsMember("u1", "converted"); !errors.Is(err, ErrRebuilding) {
		t.Fatalf("member of a rebuilding segment: err %v", err)
	}
	if _, err := e.SegmentCount("added"); !errors.Is(err, ErrRebuilding) {
		t.Fatalf("size of a rebuilding segment: err %v", err)
	}
	for _, s := range e.UserSegments("u1") {
		if slices.Contains(wantStale, s) {
			t.Fatalf("u1's segments include %s, which is rebuilding", s)
		}
	}
	// The unchanged segments are served, exact, meanwhile; live messages
	// (batches and uploads) go on.
	for _, s := range segs2 {
		if !slices.Contains(wantStale, s.ID) {
			want := ref.Members(s.ID, clock.Now())
			// The reference's clock moved three hours: tick first.
			if err := e.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if got := members(t, e, s.ID); !slices.Equal(got, want) {
				t.Fatalf("unchanged segment %s while rebuilding\n got %v\nwant %v", s.ID, got, want)
			}
		}
	}
	for range 6 {
		m := *next()
		if err := e.Apply(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range log[8:toSeq] {
		src.ch <- m
	}
	close(src.ch)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.Messages != toSeq || r.res.Live != 6 || r.res.SkippedEvents != 0 {
		t.Fatalf("rebuild result %+v", r.res)
	}
	if st := e.Status(); len(st.Rebuilding) != 0 {
		t.Fatalf("still rebuilding: %+v", st.Rebuilding)
	}
	check(e, "right after the rebuild")

	// It goes on exactly: windows move, batches arrive. A snapshot now
	// holds every segment.
	for step := range 10 {
		clock.Advance(time.Duration(rng.IntN(10*60)+1) * time.Minute)
		if err := e.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		m := *next()
		if err := e.Apply(ctx, &m); err != nil {
			t.Fatal(err)
		}
		check(e, fmt.Sprintf("step %d after the rebuild", step))
	}
	res, err = New(cfg2).Restore(snapio.NewReader(snapshotOf(t, e)))
	if err != nil || len(res.Stale) != 0 {
		t.Fatalf("snapshot after the rebuild: stale %v, err %v", res.Stale, err)
	}
}

// TestSnapshotWhileRebuildingIsStale: a snapshot taken during a rebuild
// does not hold the rebuilt segments' partial state.
func TestSnapshotWhileRebuildingIsStale(t *testing.T) {
	t.Parallel()
	segs := compileRandomRules(t)
	cfg := Config{Segments: segs, Clock: NewManualClock(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)), TickInterval: time.Hour, RetentionDays: testRetentionDays}
	e := New(cfg)
	if _, err := e.StartRebuild([]string{"young_men"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.StartRebuild([]string{"beta"}); err == nil {
		t.Fatal("a second rebuild started")
	}
	r := run(e)
	defer r.stop()
	res, err := New(cfg).Restore(snapio.NewReader(snapshotOf(t, e)))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"not_young_payers", "young_men", "young_payers"}; !slices.Equal(res.Stale, want) {
		t.Fatalf("stale %v, want %v", res.Stale, want)
	}
}
