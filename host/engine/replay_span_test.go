package engine

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// spanSource is a RebuildSource over a log held in memory, from a
// sequence on; it counts what it hands out.
type spanSource struct {
	log  []*ingest.Message
	next int
	read int
}

func newSpanSource(log []*ingest.Message, from uint64) *spanSource {
	return &spanSource{log: log, next: int(from) - 1}
}

func (s *spanSource) Next(context.Context) (*ingest.Message, error) {
	if s.next >= len(s.log) {
		return nil, io.EOF
	}
	m := s.log[s.next]
	s.next++
	s.read++
	return m, nil
}

// TestReplaySpan: a replacement of each segment of the random rules (every
// kind of window, lifecycle stages, sequences, profiles, segments read by
// others, a static one) over a log of about 25 days with a retention of
// 20 reads the log only from the first message that can hold an event its
// windows reach, and is exact against the reference; the static segment,
// whose uploads have no time, reads it whole, and short windows read much
// less of it than the retention's.
func TestReplaySpan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 7))
	segs := compileRandomRules(t)
	start := time.Date(2026, 10, 20, 22, 0, 0, 0, time.UTC)
	clock := NewManualClock(start)
	e := New(Config{Segments: segs, Clock: clock, TickInterval: time.Hour, RetentionDays: testRetentionDays})
	ref := reference.New(segs, time.UTC, DefaultMaxFutureSkew, testRetentionDays)
	r := run(e)
	defer r.stop()
	var log []*ingest.Message
	for range 160 {
		clock.Advance(time.Duration(rng.IntN(6*60)+30) * time.Minute)
		if err := e.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		msg := &ingest.Message{Seq: uint64(len(log) + 1)}
		if rng.IntN(8) == 0 {
			users := []string{fmt.Sprintf("u%d", rng.IntN(30)), fmt.Sprintf("u%d", rng.IntN(30))}
			msg.Upload = &ingest.StaticUpload{Segment: "beta", Users: users, Replace: rng.IntN(2) == 0}
			ref.Upload("beta", users, msg.Upload.Replace)
		} else {
			msg.Batch = randomEvents(rng, clock.Now(), []string{"checkout", "pay", "page_view", "search", "other"}, []string{"shoes", "bags", "hats"})
			// Events past the skew are refused live but not by a rebuild,
			// which judges them at its later clock (rebuild.go): leave
			// them out; those ahead of the clock within it stay.
			msg.Batch.Events = slices.DeleteFunc(msg.Batch.Events, func(ev rules.Event) bool {
				return ev.Time > clock.Now().Add(DefaultMaxFutureSkew).UnixMilli()
			})
			ref.Apply(msg.Batch, clock.Now())
		}
		log = append(log, msg)
		m := *msg
		if err := e.Apply(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	if days := clock.Now().Sub(start).Hours() / 24; days < testRetentionDays+2 {
		t.Fatalf("the log spans %.1f days, not past the retention of %d", days, testRetentionDays)
	}
	again := compileRandomRules(t) // the same definitions, compiled anew
	from := map[string]uint64{}
	for _, seg := range again {
		var rb *Rebuild
		if err := e.Do(ctx, func() error {
			var err error
			rb, err = e.StartReplace(seg, 1)
			return err
		}); err != nil {
			t.Fatalf("%s: %v", seg.ID, err)
		}
		src := newSpanSource(log, rb.FromSeq())
		res, err := rb.Run(ctx, src)
		if err != nil {
			t.Fatalf("%s: %v", seg.ID, err)
		}
		if want := uint64(len(log)) - rb.FromSeq() + 1; res.Messages != want || uint64(src.read) != want {
			t.Fatalf("%s: read %d messages (result %d) from %d, want %d", seg.ID, src.read, res.Messages, rb.FromSeq(), want)
		}
		from[seg.ID] = rb.FromSeq()
		for _, s := range segs {
			want := ref.Members(s.ID, clock.Now())
			if got := members(t, e, s.ID); !slices.Equal(got, want) {
				t.Fatalf("after replacing %s from seq %d: segment %s\n got %v\nwant %v", seg.ID, rb.FromSeq(), s.ID, got, want)
			}
		}
	}
	t.Logf("first sequence read, of %d: %v", len(log), from)
	if from["beta"] != 1 {
		t.Fatalf("the static segment read the log from %d, not whole", from["beta"])
	}
	for _, short := range []string{"hours_6", "max_pay_24h", "big_payer_2d", "converted", "young_men"} {
		if from[short] <= from["ever_searched"] || from[short] < uint64(len(log))/2 {
			t.Fatalf("%s (a short window or none) reads from %d; ever_searched from %d, of %d", short, from[short], from["ever_searched"], len(log))
		}
	}
	if from["ever_searched"] <= 1 {
		t.Fatalf("ever_searched reads the whole log (from %d) though the log is older than the retention", from["ever_searched"])
	}
}

// TestReplaySpanBackfill: a log published at once, in event-time order
// (a backfill: the clock does not move), is cut by event time too: a
// segment of the last day reads about the last day's messages and is
// exact. After a restore from a snapshot, what the log held before it is
// not known, and the rebuild reads it whole.
func TestReplaySpanBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 9))
	segs := compileRandomRules(t)
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	clock := NewManualClock(now)
	cfg := Config{Segments: segs, Clock: clock, TickInterval: time.Hour, RetentionDays: testRetentionDays}
	e := New(cfg)
	ref := reference.New(segs, time.UTC, DefaultMaxFutureSkew, testRetentionDays)
	r := run(e)
	defer r.stop()
	var log []*ingest.Message
	const n = 100 // ten days, a message every 2.4 hours of event time
	for i := range n {
		at := now.Add(-time.Duration(n-1-i) * 144 * time.Minute)
		var b rules.Batch
		for range 20 {
			ev := rules.Event{User: fmt.Sprintf("u%d", rng.IntN(30)), Name: []string{"pay", "page_view"}[rng.IntN(2)],
				Time: at.Add(-time.Duration(rng.IntN(60)) * time.Minute).UnixMilli()}
			if ev.Name == "pay" {
				ev.Props = map[string]any{"amount": float64(rng.IntN(100))}
			}
			b.Events = append(b.Events, ev)
		}
		msg := &ingest.Message{Seq: uint64(i + 1), Batch: b}
		ref.Apply(b, now)
		log = append(log, msg)
		m := *msg
		if err := e.Apply(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(e *Engine, id string) *Rebuild {
		t.Helper()
		var seg *rules.Segment
		for _, s := range compileRandomRules(t) {
			if s.ID == id {
				seg = s
			}
		}
		var rb *Rebuild
		if err := e.Do(ctx, func() error {
			var err error
			rb, err = e.StartReplace(seg, 1)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := rb.Run(ctx, newSpanSource(log, rb.FromSeq())); err != nil {
			t.Fatal(err)
		}
		if got, want := members(t, e, id), ref.Members(id, now); !slices.Equal(got, want) {
			t.Fatalf("%s from seq %d\n got %v\nwant %v", id, rb.FromSeq(), got, want)
		}
		return rb
	}
	// max_pay_24h: the last 24 hours, 10 messages of event time and one
	// for the hour a mark may lag.
	if rb := replace(e, "max_pay_24h"); rb.FromSeq() < n-12 {
		t.Fatalf("max_pay_24h reads from seq %d of %d", rb.FromSeq(), n)
	}
	e2 := New(cfg)
	if _, err := e2.Restore(snapio.NewReader(snapshotOf(t, e))); err != nil {
		t.Fatal(err)
	}
	r2 := run(e2)
	defer r2.stop()
	if rb := replace(e2, "max_pay_24h"); rb.FromSeq() != 1 {
		t.Fatalf("after a restore, max_pay_24h reads from seq %d, not the whole log", rb.FromSeq())
	}
}
