package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// bucketRules exercise the bucketed columns where buckets are finest:
// hour windows (whose buckets split at local midnight for days), every
// aggregate that combines per bucket, and sequences over hours.
const bucketRules = `
segments:
  - id: days_30h
    did: {events: [page_view, search], aggregate: days, is: ">= 2", last: 30h}
  - id: count_5h
    did: {event: page_view, last: 5h, count: ">= 2"}
  - id: sum_2d
    did: {event: pay, aggregate: sum(amount), is: ">= 150", last: 2d}
  - id: avg_26h
    did: {event: pay, aggregate: avg(amount), is: ">= 50", last: 26h}
  - id: min_9h
    did: {event: pay, aggregate: min(amount), is: "<= 30", last: 9h}
  - id: max_3d
    did: {event: pay, aggregate: max(amount), is: ">= 90", last: 3d}
  - id: distinct_28h
    did: {event: search, aggregate: distinct(term), is: ">= 2", last: 28h}
  - id: seq_20h
    sequence: {steps: [{event: search}, {event: pay}], within: 6h, last: 20h}
  - id: dropoff_30h
    sequence: {steps: [{event: checkout}], then_not: {event: pay}, within: 2h, last: 30h}
`

// TestBucketsAgainstReference runs the randomized comparison with the
// reference on bucketRules in zones whose offset is not a whole hour (a
// UTC hour then spans two calendar days), one of them crossing the end of
// daylight saving time, with snapshots restored into a fresh engine on
// the way.
func TestBucketsAgainstReference(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "America/New_York"} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", zone, seed), func(t *testing.T) {
				t.Parallel()
				loc, err := time.LoadLocation(zone)
				if err != nil {
					t.Fatal(err)
				}
				runBuckets(t, loc, seed)
			})
		}
	}
}

func runBuckets(t *testing.T, loc *time.Location, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 77))
	segs, err := rules.Compile([]rules.File{{Name: "buckets.yaml", Data: []byte(bucketRules)}}, rules.Options{MaxWindowDays: testRetentionDays})
	if err != nil {
		t.Fatal(err)
	}
	// The clock crosses the end of daylight saving time in St John's and
	// New York (Nov 1, 2026).
	clock := NewManualClock(time.Date(2026, 10, 30, 20, 0, 0, 0, loc))
	cfg := Config{Segments: segs, Location: loc, Clock: clock, TickInterval: time.Hour, RetentionDays: testRetentionDays}
	cur := run(New(cfg))
	defer func() { cur.stop() }()
	ref := reference.New(segs, loc, DefaultMaxFutureSkew, testRetentionDays)
	ctx := context.Background()
	names := []string{"checkout", "pay", "page_view", "search", "other"}
	nonEmpty := map[string]bool{}
	seq := uint64(0)
	for step := range 80 {
		// Small steps, so that checkpoints land near hour edges and the
		// half hours where these zones' days begin.
		clock.Advance(time.Duration(rng.IntN(5*60)+1) * time.Minute)
		now := clock.Now()
		if rng.IntN(4) == 0 {
			if err := cur.e.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			b := randomEvents(rng, now, names, []string{"shoes", "hats", "bags"})
			ref.Apply(b, now)
			seq++
			if err := cur.e.Apply(ctx, &ingest.Message{Seq: seq, Batch: b}); err != nil {
				t.Fatal(err)
			}
		}
		if step%20 == 19 {
			// The state survives a snapshot: go on with a restored engine.
			data := snapshotOf(t, cur.e)
			next := New(cfg)
			if _, err := next.Restore(snapio.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			cur.stop()
			cur = run(next)
			if again := snapshotOf(t, cur.e); !bytes.Equal(again, data) {
				t.Fatalf("step %d: the restored state encodes to other bytes", step)
			}
		}
		// Judging many users at once (holdsColumns, which evaluate uses
		// past batchMin users) agrees with judging them one by one.
		if err := cur.e.Do(ctx, func() error { return checkColumns(cur.e) }); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for _, s := range segs {
			want := ref.Members(s.ID, now)
			got := members(t, cur.e, s.ID)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d at %s: segment %s\n got %v\nwant %v", step, now.Format(time.RFC3339), s.ID, got, want)
			}
			nonEmpty[s.ID] = nonEmpty[s.ID] || len(got) > 0
		}
	}
	for _, s := range segs {
		if !nonEmpty[s.ID] {
			t.Errorf("segment %s was empty at every checkpoint", s.ID)
		}
	}
}

// TestRestoreRejectsStateVersion1: a snapshot of the per-user layout
// (state version 1) is incompatible, so segd replays the log instead.
func TestRestoreRejectsStateVersion1(t *testing.T) {
	t.Parallel()
	cfg, _ := randomConfig(t, time.UTC)
	r := run(New(cfg))
	data := snapshotOf(t, r.e)
	r.stop()
	binary.LittleEndian.PutUint32(data, 1)
	if _, err := New(cfg).Restore(snapio.NewReader(data)); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("err = %v, want ErrIncompatible", err)
	}
}

// TestNumColumnMatchesMap checks numColumn against a map over enough users
// to merge its recent map into the sorted part many times, with clones
// (as a capture makes) that must keep what they saw.
func TestNumColumnMatchesMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 9))
	for _, tc := range []struct {
		f    rules.AggFunc
		wide bool
	}{{rules.AggSum, false}, {rules.AggMin, false}, {rules.AggMax, false}, {rules.AggSum, true}, {rules.AggMin, true}, {rules.AggMax, true}} {
		// Without wide, whole numbers only (the narrow column); with it,
		// past halfway, fractions, numbers beyond an int32 and -0 too,
		// which widen it.
		f := tc.f
		wideAt := 1 << 30
		if tc.wide {
			wideAt = 10000
		}
		c := &numColumn{}
		model := map[uint32]float64{}
		var frozen *numColumn
		var frozenModel map[uint32]float64
		for step := range 20000 {
			u := uint32(rng.IntN(5000))
			v := float64(rng.IntN(200) - 100)
			if step >= wideAt {
				switch rng.IntN(50) {
				case 0:
					v += 0.5
				case 1:
					v *= 3e7
				case 2:
					v = math.Copysign(0, -1)
				}
			}
			x, had := model[u]
			c.add(u, v, f, !had)
			if !had {
				if f == rules.AggSum {
					v = 0 + v // a sum starts at 0: -0 sums to 0
				}
				model[u] = v
			} else {
				switch f {
				case rules.AggSum:
					model[u] = x + v
				case rules.AggMin:
					model[u] = min(x, v)
				case rules.AggMax:
					model[u] = max(x, v)
				}
			}
			if step%3000 == 0 {
				frozen, frozenModel = c, maps.Clone(model)
				c = c.clone()
			}
		}
		check := func(c *numColumn, model map[uint32]float64) {
			t.Helper()
			if c.len() != len(model) {
				t.Fatalf("%s: %d users, want %d", f, c.len(), len(model))
			}
			var prev uint32
			n := 0
			c.each(func(u uint32, x float64) {
				if n > 0 && u <= prev {
					t.Fatalf("%s: user %d after %d", f, u, prev)
				}
				prev, n = u, n+1
				if want, ok := model[u]; !ok || want != x || math.Signbit(want) != math.Signbit(x) {
					t.Fatalf("%s: user %d has %v, want %v", f, u, x, want)
				}
			})
			from := 0
			for u := range uint32(5000) {
				got, ok := c.get(u)
				want, wok := model[u]
				if ok != wok || got != want {
					t.Fatalf("%s: get(%d) = %v %v, want %v %v", f, u, got, ok, want, wok)
				}
				if got, ok := c.getFrom(u, &from); ok != wok || got != want {
					t.Fatalf("%s: getFrom(%d) = %v %v, want %v %v", f, u, got, ok, want, wok)
				}
			}
		}
		check(c, model)
		check(frozen, frozenModel)
		if len(c.keys) == 0 {
			t.Fatalf("%s: never merged", f)
		}
		if c.wide != (wideAt < 20000) {
			t.Fatalf("%s: wide %v, want %v", f, c.wide, wideAt < 20000)
		}
	}
}

// TestPairColumnMatchesSets checks pairColumn against a set per user over
// enough pairs to merge many times, with clones that keep what they saw.
func TestPairColumnMatchesSets(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 2))
	c := &pairColumn{}
	model := map[uint32]map[uint32]bool{}
	var frozen *pairColumn
	var frozenModel map[uint32][]uint32
	snapshot := func() map[uint32][]uint32 {
		out := map[uint32][]uint32{}
		for u, vs := range model {
			for v := range vs {
				out[u] = append(out[u], v)
			}
			slices.Sort(out[u])
		}
		return out
	}
	for step := range 20000 {
		u, v := uint32(rng.IntN(3000)), uint32(rng.IntN(20))
		c.add(u, v)
		if model[u] == nil {
			model[u] = map[uint32]bool{}
		}
		model[u][v] = true
		if step == 7000 {
			frozen, frozenModel = c, snapshot()
			c = c.clone()
		}
	}
	check := func(c *pairColumn, want map[uint32][]uint32) {
		t.Helper()
		n := 0
		for u := range uint32(3000) {
			got := c.values(u, nil)
			slices.Sort(got)
			if !slices.Equal(got, want[u]) {
				t.Fatalf("user %d: values %v, want %v", u, got, want[u])
			}
			n += len(got)
		}
		all := c.all()
		if len(all) != n || !slices.IsSorted(all) {
			t.Fatalf("all: %d pairs (sorted: %v), want %d", len(all), slices.IsSorted(all), n)
		}
	}
	check(c, snapshot())
	check(frozen, frozenModel)
	if len(c.pairs) == 0 {
		t.Fatal("never merged")
	}
}

// checkColumns compares didLeaf.holdsColumns with holds for every user and
// did leaf but distinct. Writer only.
func checkColumns(e *Engine) error {
	set := roaring.New()
	set.AddRange(0, uint64(e.users.size()))
	us := set.ToArray()
	for _, l := range e.leaves {
		d, ok := l.(*didLeaf)
		if !ok || d.cond.Aggregate.Func == rules.AggDistinct {
			continue
		}
		out := make([]bool, len(us))
		d.holdsColumns(us, set, e.now, out)
		// holdsFew (fewer than batchMin users) over every other user, the
		// others masked out, and over all of them.
		mask := make([]bool, len(us))
		for i := range mask {
			mask[i] = i%2 == 0
		}
		few, fewAll := make([]bool, len(us)), make([]bool, len(us))
		d.holdsFew(us, e.now, mask, few)
		d.holdsFew(us, e.now, nil, fewAll)
		for i, u := range us {
			want := d.holds(u, e.now)
			if out[i] != want {
				return fmt.Errorf("%s %s: user %d: holdsColumns %v, holds %v", d.cond.Aggregate, d.cond.Window, u, out[i], want)
			}
			if fewAll[i] != want || (mask[i] && few[i] != want) {
				return fmt.Errorf("%s %s: user %d: holdsFew %v (masked %v), holds %v", d.cond.Aggregate, d.cond.Window, u, fewAll[i], few[i], want)
			}
		}
	}
	return nil
}

// TestHoldsFewCountsRepeats: users with many events in one bucket (count
// bit planes several deep) are judged alike by holdsFew, holdsColumns and
// holds, for count and avg thresholds around their counts.
func TestHoldsFewCountsRepeats(t *testing.T) {
	t.Parallel()
	var src strings.Builder
	src.WriteString("segments:\n")
	for n := 1; n <= 12; n++ {
		fmt.Fprintf(&src, "  - {id: c%d, did: {event: a, count: \">= %d\", last: 3d}}\n", n, n)
	}
	src.WriteString("  - {id: avg, did: {event: a, aggregate: avg(v), is: \">= 5\", last: 3d}}\n")
	segs, err := rules.Compile([]rules.File{{Name: "repeats.yaml", Data: []byte(src.String())}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cur := run(New(Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour}))
	defer cur.stop()
	rng := rand.New(rand.NewPCG(3, 4))
	var b rules.Batch
	for u := range 40 {
		for range rng.IntN(12) {
			b.Events = append(b.Events, rules.Event{User: fmt.Sprintf("u%d", u), Name: "a",
				Time:  now.Add(-time.Duration(rng.IntN(3*24*60)) * time.Minute).UnixMilli(),
				Props: map[string]any{"v": float64(rng.IntN(10))}})
		}
	}
	ctx := context.Background()
	if err := cur.e.Apply(ctx, &ingest.Message{Seq: 1, Batch: b}); err != nil {
		t.Fatal(err)
	}
	deep := false
	for _, l := range cur.e.leaves {
		if d, ok := l.(*didLeaf); ok {
			for _, c := range d.cols {
				deep = deep || len(c.more) >= 2
			}
		}
	}
	if !deep {
		t.Fatal("no bucket has a count of 3 or more: the test data misses its case")
	}
	if err := cur.e.Do(ctx, func() error { return checkColumns(cur.e) }); err != nil {
		t.Fatal(err)
	}
}
