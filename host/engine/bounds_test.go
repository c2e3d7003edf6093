package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// boundRules are count conditions with every comparison, which a step's
// own events may decide (stepAdds) or leave to the buckets.
const boundRules = `
segments:
  - {id: ge1_5h, did: {event: page_view, last: 5h}}
  - {id: ge2_2d, did: {events: [page_view, search], count: ">= 2", last: 2d}}
  - {id: gt2_30h, did: {event: search, count: "> 2", last: 30h}}
  - {id: lt2_2d, did: {event: page_view, count: "< 2", last: 2d}}
  - {id: le1_9h, did: {event: pay, count: "<= 1", last: 9h}}
  - {id: eq1_3d, did: {event: checkout, count: "= 1", last: 3d}}
  - {id: ne2_26h, did: {event: search, count: "!= 2", last: 26h}}
  - {id: between_2d, did: {events: [page_view, pay], count: "between 2 and 3", last: 2d}}
  - {id: none_24h, did_not: {event: pay, last: 24h}}
  - {id: where_ge2_3d, did: {event: pay, where: "(props.amount ?? 0) >= 50", count: ">= 2", last: 3d}}
`

// TestCountBoundsAgainstReference runs the randomized comparison with the
// reference on count conditions of every comparison, with batches that
// give a user several events at once, so that the lower bound of a step's
// own events decides some users and leaves others to the buckets.
func TestCountBoundsAgainstReference(t *testing.T) {
	t.Parallel()
	for _, parallel := range []bool{false, true} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("parallel=%v/seed%d", parallel, seed), func(t *testing.T) {
				t.Parallel()
				runBounds(t, seed, parallel)
			})
		}
	}
}

// TestRandomizedAgainstReferenceJudgingInParallel is the randomized
// comparison with the reference with every step's segments judged on
// several goroutines (evaluateParallel), as steps that touch many users
// are; under -race it also checks that they share nothing.
func TestRandomizedAgainstReferenceJudgingInParallel(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			runRandomizedWith(t, time.UTC, seed, func(c *Config) { c.evalParallelMin = 1 })
		})
	}
}

func runBounds(t *testing.T, seed uint64, parallel bool) {
	rng := rand.New(rand.NewPCG(seed, 41))
	segs, err := rules.Compile([]rules.File{{Name: "bounds.yaml", Data: []byte(boundRules)}}, rules.Options{MaxWindowDays: testRetentionDays})
	if err != nil {
		t.Fatal(err)
	}
	loc := time.UTC
	clock := NewManualClock(time.Date(2026, 10, 30, 20, 0, 0, 0, loc))
	cfg := Config{Segments: segs, Location: loc, Clock: clock, TickInterval: time.Hour, RetentionDays: testRetentionDays}
	if parallel {
		cfg.evalParallelMin = 1
	}
	cur := run(New(cfg))
	defer cur.stop()
	ref := reference.New(segs, loc, DefaultMaxFutureSkew, testRetentionDays)
	ctx := context.Background()
	names := []string{"checkout", "pay", "page_view", "search", "other"}
	nonEmpty := map[string]bool{}
	for step := range 80 {
		// Often the same clock reading as the step before: the
		// bound of the last ingest stays valid.
		if rng.IntN(3) > 0 {
			clock.Advance(time.Duration(rng.IntN(3*60)+1) * time.Minute)
		}
		now := clock.Now()
		b := randomEvents(rng, now, names, []string{"shoes", "hats"})
		ref.Apply(b, now)
		if err := cur.e.Apply(ctx, &ingest.Message{Seq: uint64(step + 1), Batch: b}); err != nil {
			t.Fatal(err)
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
