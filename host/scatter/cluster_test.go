package scatter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// testRules exercises every kind of rule: windows of hours and days,
// counts, aggregates, sequences, lifecycles, profiles, references to other
// segments, negation and a static segment (the rules of the engine's
// randomized test).
const testRules = `
segments:
  - id: checkout_3x_7d
    did: {event: checkout, count: ">= 3", last: 7d}
  - id: big_payer_2d
    did: {event: pay, where: "(props.amount ?? 0) >= 30", last: 2d}
  - id: rare_visitor_3d
    did: {events: [page_view, search], count: "< 2", last: 3d}
  - id: spend_sum_5d
    did: {event: pay, aggregate: sum(amount), is: ">= 40", last: 5d}
  - id: spend_avg_7d
    did: {event: pay, aggregate: avg(amount), is: "< 10", last: 7d}
  - id: active_days
    did: {events: [page_view, search, checkout], aggregate: days, is: "between 2 and 3", last: 7d}
  - id: terms
    did: {event: search, aggregate: distinct(term), is: ">= 2", last: 14d}
  - id: ever_searched
    did: {event: search, ever: true}
  - id: hours_6
    did: {event: page_view, last: 6h, count: ">= 2"}
  - id: no_pay_3d
    did_not: {event: pay, last: 3d}
  - id: converted
    sequence: {steps: [{event: checkout}, {event: pay}], within: 12h, last: 3d}
  - id: unpaid
    sequence: {steps: [{event: checkout}], then_not: {event: pay}, within: 6h, last: 4d}
  - id: new_viewers
    lifecycle: {stage: new, event: page_view, last: 3d}
  - id: stopped
    lifecycle: {stage: stopped, event: page_view, previous: 5d, last: 2d}
  - id: young_men
    profile: age < 25 && gender == "male"
  - id: no_city
    profile: city == nil
  - id: young_payers
    all: [{in_segment: young_men}, {any: [{in_segment: big_payer_2d}, {in_segment: converted}]}]
  - id: not_young_payers
    not_in_segment: young_payers
  - id: beta
    static: true
`

// testRetentionDays is the engines' retention; the analysis indexes keep
// testIndexDays.
const (
	testRetentionDays = 20
	testIndexDays     = 30
)

func compileTestRules(t testing.TB) []*rules.Segment {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "test.yaml", Data: []byte(testRules)}}, rules.Options{MaxWindowDays: testRetentionDays})
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// cluster is P partitions in this process, each a real engine with a real
// analysis index, on one clock, merged by a Scatter.
type cluster struct {
	engines []*engine.Engine
	indexes []*analysis.Index
	s       *Scatter
	seq     uint64
}

func newCluster(t testing.TB, n int, loc *time.Location, clock *engine.ManualClock) *cluster {
	t.Helper()
	return newClusterWith(t, n, loc, clock, nil)
}

// wrapParts builds the Parts a Scatter merges from the in-process ones
// (nil: those themselves): the tests of package remotepart reach them
// over NATS.
type wrapParts = func(t testing.TB, parts []Part) []Part

// newClusterWith is newCluster whose Scatter merges wrap(parts).
func newClusterWith(t testing.TB, n int, loc *time.Location, clock *engine.ManualClock, wrap wrapParts) *cluster {
	t.Helper()
	c := &cluster{}
	parts := make([]Part, n)
	for p := range n {
		ix := analysis.New(analysis.Config{Location: loc, Days: testIndexDays, Now: clock.Now})
		e := engine.New(engine.Config{Segments: compileTestRules(t), Location: loc, Clock: clock,
			TickInterval: time.Hour, RetentionDays: testRetentionDays, Observer: ix})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		c.engines, c.indexes = append(c.engines, e), append(c.indexes, ix)
		parts[p] = NewLocal(LocalConfig{Engine: e, Index: ix})
	}
	if wrap != nil {
		parts = wrap(t, parts)
	}
	s, err := New(parts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.s = s
	return c
}

// apply gives each partition the items of its users, as its consumer
// keeps them from the stream: one stream sequence per message, and a
// partition with nothing in the message applies nothing. An upload goes
// to every partition with its users (a replace empties the others).
func (c *cluster) apply(t testing.TB, msg *ingest.Message) {
	t.Helper()
	c.seq++
	n := len(c.engines)
	parts := make([]*ingest.Message, n)
	for p := range parts {
		parts[p] = &ingest.Message{Seq: c.seq}
	}
	if up := msg.Upload; up != nil {
		for p := range parts {
			parts[p].Upload = &ingest.StaticUpload{Segment: up.Segment, Replace: up.Replace, Users: []string{}}
		}
		for _, u := range up.Users {
			pu := parts[ingest.Partition(u, n)].Upload
			pu.Users = append(pu.Users, u)
		}
	}
	for _, ev := range msg.Batch.Events {
		b := &parts[ingest.Partition(ev.User, n)].Batch
		b.Events = append(b.Events, ev)
	}
	for _, pr := range msg.Batch.Profiles {
		b := &parts[ingest.Partition(pr.User, n)].Batch
		b.Profiles = append(b.Profiles, pr)
	}
	for p, m := range parts {
		if m.Upload == nil && len(m.Batch.Events)+len(m.Batch.Profiles) == 0 {
			continue
		}
		if err := c.engines[p].Apply(context.Background(), m); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
	}
}

func (c *cluster) tick(t testing.TB) {
	t.Helper()
	for p, e := range c.engines {
		if err := e.Tick(context.Background()); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
	}
}

var (
	testEventNames = []string{"checkout", "pay", "page_view", "search", "other"}
	testTerms      = []string{"shoes", "bags", "hats"}
)

// testUsers is how many users the generator picks from.
const testUsers = 60

// randomBatch is a batch of events and profile updates at about now:
// mostly recent, some days late and out of order, some beyond retention,
// a few ahead of the clock (within and beyond the allowed skew). Amounts
// are halves, so that sums are exact in any order.
func randomBatch(rng *rand.Rand, now time.Time) rules.Batch {
	var b rules.Batch
	for range rng.IntN(40) + 1 {
		user := fmt.Sprintf("u%d", rng.IntN(testUsers))
		at := now.Add(-time.Duration(rng.IntN(4*24*60)) * time.Minute)
		switch rng.IntN(12) {
		case 0, 1:
			at = now.Add(-time.Duration(rng.IntN(24*(testRetentionDays+3))) * time.Hour)
		case 2:
			at = now.Add(time.Duration(rng.IntN(10)) * time.Minute)
		case 3, 4, 5:
			at = now.Add(-time.Duration(rng.IntN(6*60)) * time.Minute)
		}
		ev := rules.Event{User: user, Name: testEventNames[rng.IntN(len(testEventNames))], Time: at.UnixMilli()}
		switch ev.Name {
		case "pay":
			if rng.IntN(5) > 0 {
				ev.Props = map[string]any{"amount": float64(rng.IntN(80)) * 0.5}
			}
		case "search":
			ev.Props = map[string]any{"term": testTerms[rng.IntN(len(testTerms))]}
		}
		b.Events = append(b.Events, ev)
	}
	for range rng.IntN(8) {
		user := fmt.Sprintf("u%d", rng.IntN(testUsers+10))
		attrs := map[string]any{}
		if rng.IntN(3) > 0 {
			attrs["age"] = float64(15 + rng.IntN(15))
		}
		attrs["gender"] = []any{"male", "female", nil}[rng.IntN(3)]
		if rng.IntN(3) == 0 {
			attrs["city"] = []any{"Paris", nil}[rng.IntN(2)]
		}
		b.Profiles = append(b.Profiles, rules.ProfileUpdate{User: user, Attrs: attrs})
	}
	return b
}
