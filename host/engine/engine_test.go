package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// startEngine runs an engine for the rules until the test ends.
func startEngine(t *testing.T, src string, loc *time.Location, clock Clock) *Engine {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "test.yaml", Data: []byte(src)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Segments: segs, Location: loc, Clock: clock, TickInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func apply(t *testing.T, e *Engine, seq uint64, b rules.Batch) {
	t.Helper()
	if err := e.Apply(context.Background(), &ingest.Message{Seq: seq, Batch: b}); err != nil {
		t.Fatal(err)
	}
}

func members(t *testing.T, e *Engine, seg string) []string {
	t.Helper()
	m, err := e.Members(seg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUsersLeaveSevenDayWindowWhenTheClockMoves(t *testing.T) {
	t.Parallel()
	loc, _ := time.LoadLocation("Asia/Shanghai")
	start := time.Date(2026, 11, 20, 23, 30, 0, 0, loc)
	clock := NewManualClock(start)
	e := startEngine(t, `
segments:
  - id: checkout_3x_7d
    did: {event: checkout, count: ">= 3", last: 7d}
`, loc, clock)
	ev := func(user string, at time.Time) rules.Event {
		return rules.Event{User: user, Name: "checkout", Time: at.UnixMilli()}
	}
	// u1 checks out three times on Nov 20 (Shanghai). u2 twice on Nov 20 and
	// once at 00:10 on Nov 21, which is still Nov 20 in UTC.
	apply(t, e, 1, rules.Batch{Events: []rules.Event{
		ev("u1", start.Add(-3*time.Hour)), ev("u1", start.Add(-2*time.Hour)), ev("u1", start.Add(-time.Hour)),
		ev("u2", start.Add(-2*time.Hour)), ev("u2", start.Add(-time.Hour)),
	}})
	if got := members(t, e, "checkout_3x_7d"); !slices.Equal(got, []string{"u1"}) {
		t.Fatalf("members = %v, want [u1]", got)
	}
	clock.Set(time.Date(2026, 11, 21, 0, 10, 0, 0, loc))
	apply(t, e, 2, rules.Batch{Events: []rules.Event{ev("u2", clock.Now())}})
	if got := members(t, e, "checkout_3x_7d"); !slices.Equal(got, []string{"u1", "u2"}) {
		t.Fatalf("members = %v, want [u1 u2]", got)
	}
	// Nov 26 is the last day whose 7-day window holds Nov 20.
	clock.Set(time.Date(2026, 11, 26, 23, 59, 59, 0, loc))
	if err := e.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := members(t, e, "checkout_3x_7d"); !slices.Equal(got, []string{"u1", "u2"}) {
		t.Fatalf("on Nov 26 members = %v, want [u1 u2]", got)
	}
	// Midnight in Shanghai: Nov 20 leaves the window. u1 had all three there;
	// u2 keeps only the Nov 21 one. Nobody sent an event.
	clock.Set(time.Date(2026, 11, 27, 0, 0, 0, 0, loc))
	if err := e.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := members(t, e, "checkout_3x_7d"); len(got) != 0 {
		t.Fatalf("on Nov 27 members = %v, want none", got)
	}
	if n, _ := e.SegmentCount("checkout_3x_7d"); n != 0 {
		t.Fatalf("count = %d, want 0", n)
	}
}

func TestZeroCountsAreInTheUniverse(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := startEngine(t, `
segments:
  - id: few_checkouts
    did: {event: checkout, count: "< 2", last: 7d}
`, time.UTC, NewManualClock(now))
	apply(t, e, 1, rules.Batch{
		Events: []rules.Event{
			{User: "busy", Name: "checkout", Time: now.UnixMilli()},
			{User: "busy", Name: "checkout", Time: now.UnixMilli()},
			{User: "once", Name: "checkout", Time: now.UnixMilli()},
			{User: "browser", Name: "page_view", Time: now.UnixMilli()},
		},
		Profiles: []rules.ProfileUpdate{{User: "profile-only", Attrs: map[string]any{"age": 30.0}}},
	})
	want := []string{"browser", "once", "profile-only"}
	if got := members(t, e, "few_checkouts"); !slices.Equal(got, want) {
		t.Fatalf("members = %v, want %v", got, want)
	}
}

func TestRedeliveredBatchChangesNothing(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := startEngine(t, "id: twice\ndid: {event: pay, count: 2, last: 1d}\n", time.UTC, NewManualClock(now))
	b := rules.Batch{Events: []rules.Event{{User: "u", Name: "pay", Time: now.UnixMilli()}}}
	apply(t, e, 7, b)
	apply(t, e, 7, b)
	if got := members(t, e, "twice"); len(got) != 0 {
		t.Fatalf("a redelivered batch counted twice: members = %v", got)
	}
	apply(t, e, 8, b)
	if got := members(t, e, "twice"); !slices.Equal(got, []string{"u"}) {
		t.Fatalf("members = %v, want [u]", got)
	}
	if st := e.Status(); st.LastSeq != 8 || st.Batches != 2 || st.Events != 2 {
		t.Fatalf("status = %+v", st)
	}
}

func TestEventsTooFarAheadAreRejected(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := startEngine(t, "id: payer\ndid: {event: pay, last: 7d}\n", time.UTC, NewManualClock(now))
	apply(t, e, 1, rules.Batch{Events: []rules.Event{
		{User: "ok", Name: "pay", Time: now.Add(DefaultMaxFutureSkew).UnixMilli()},
		{User: "ahead", Name: "pay", Time: now.Add(DefaultMaxFutureSkew + time.Millisecond).UnixMilli()},
	}})
	if got := members(t, e, "payer"); !slices.Equal(got, []string{"ok"}) {
		t.Fatalf("members = %v", got)
	}
	if st := e.Status(); st.TooNew != 1 || st.Events != 1 {
		t.Fatalf("status = %+v", st)
	}
}

func TestUnknownSegmentIsNotFound(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "id: a\nprofile: x == 1\n", time.UTC, NewManualClock(time.Unix(0, 0)))
	if _, err := e.IsMember("u", "nope"); err == nil || err.Error() != `segment "nope" is not defined` || !errors.Is(err, ingest.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if _, err := e.SegmentCount("nope"); err == nil {
		t.Fatal("no error for an unknown segment")
	}
	if m, err := e.IsMember("never-seen", "a"); m || err != nil {
		t.Fatalf("never-seen user: %v %v", m, err)
	}
}

// The randomized test below compares the engine with the reference
// evaluator, a naive evaluation of the definitions over the raw events, at
// every checkpoint, for every condition kind.

const randomRules = `
segments:
  - id: checkout_3x_7d
    did: {event: checkout, count: ">= 3", last: 7d}
  - id: big_payer_2d
    did: {event: pay, where: "(props.amount ?? 0) >= 50", last: 2d}
  - id: rare_visitor_3d
    did: {events: [page_view, search], count: "< 2", last: 3d}
  - id: spend_sum_5d
    did: {event: pay, aggregate: sum(amount), is: ">= 120", last: 5d}
  - id: spend_avg_7d
    did: {event: pay, aggregate: avg(amount), is: "< 40", last: 7d}
  - id: max_pay_24h
    did: {event: pay, aggregate: max(amount), is: ">= 80", last: 24h}
  - id: min_pay_3d
    did: {event: pay, aggregate: min(amount), is: "<= 10", last: 3d}
  - id: active_days
    did: {events: [page_view, search, checkout], aggregate: days, is: "between 2 and 3", last: 7d}
  - id: terms
    did: {event: search, aggregate: distinct(term), is: ">= 2", last: 14d}
  - id: exactly_two_2d
    did: {event: checkout, count: "= 2", last: 2d}
  - id: not_one_pay_5d
    did: {event: pay, count: "!= 1", last: 5d}
  - id: late_october
    did: {event: checkout, between: [2026-10-27, 2026-11-02]}
  - id: since_nov
    did: {event: pay, since: 2026-11-01, count: ">= 2"}
  - id: ever_searched
    did: {event: search, ever: true}
  - id: hours_6
    did: {event: page_view, last: 6h, count: ">= 2"}
  - id: no_pay_3d
    did_not: {event: pay, last: 3d}
  - id: converted
    sequence: {steps: [{event: checkout}, {event: pay}], within: 12h, last: 3d}
  - id: three_step
    sequence: {steps: [{event: page_view}, {event: checkout}, {event: pay, where: "(props.amount ?? 0) > 20"}], within: 2d, last: 7d}
  - id: unpaid
    sequence: {steps: [{event: checkout}], then_not: {event: pay}, within: 6h, last: 4d}
  - id: new_viewers
    lifecycle: {stage: new, event: page_view, last: 3d}
  - id: stopped
    lifecycle: {stage: stopped, event: page_view, previous: 5d, last: 2d}
  - id: returned
    lifecycle: {stage: returned, event: checkout, previous: 3d, gap: 2d, last: 2d}
  - id: young_men
    profile: age < 25 && gender == "male"
  - id: no_city
    profile: city == nil
  - id: young_payers
    all: [{in_segment: young_men}, {any: [{in_segment: big_payer_2d}, {in_segment: converted}]}]
  - id: not_young_payers
    not_in_segment: young_payers
  - id: quiet_non_payers
    all: [{not: {did: {event: page_view, last: 2d}}}, {did_not: {event: pay, last: 5d}}]
  - id: beta
    static: true
`

const testRetentionDays = 20

func TestRandomizedAgainstReference(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "Asia/Shanghai", "America/New_York"} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", zone, seed), func(t *testing.T) {
				t.Parallel()
				loc, err := time.LoadLocation(zone)
				if err != nil {
					t.Fatal(err)
				}
				runRandomized(t, loc, seed)
			})
		}
	}
}

// compileRandomRules compiles randomRules with the tests' retention.
func compileRandomRules(t testing.TB) []*rules.Segment {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "random.yaml", Data: []byte(randomRules)}}, rules.Options{MaxWindowDays: testRetentionDays})
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// randomConfig is the engine configuration of the randomized tests: the
// random rules in loc, on a manual clock that starts just before the end
// of daylight saving time in New York (Nov 1, 2026), so that windows
// cross it.
func randomConfig(t testing.TB, loc *time.Location) (Config, *ManualClock) {
	clock := NewManualClock(time.Date(2026, 10, 28, 22, 0, 0, 0, loc))
	return Config{Segments: compileRandomRules(t), Location: loc, Clock: clock, TickInterval: time.Hour, RetentionDays: testRetentionDays}, clock
}

func runRandomized(t *testing.T, loc *time.Location, seed uint64) {
	runRandomizedWith(t, loc, seed, nil)
}

// runRandomizedWith is runRandomized with the engine's Config changed by
// tweak (nil: none).
func runRandomizedWith(t *testing.T, loc *time.Location, seed uint64, tweak func(*Config)) {
	rng := rand.New(rand.NewPCG(seed, 42))
	cfg, clock := randomConfig(t, loc)
	if tweak != nil {
		tweak(&cfg)
	}
	segs := cfg.Segments
	e := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ref := reference.New(segs, loc, DefaultMaxFutureSkew, testRetentionDays)

	names := []string{"checkout", "pay", "page_view", "search", "other"}
	terms := []string{"shoes", "bags", "hats"}
	seq := uint64(0)
	nonEmpty := map[string]bool{}
	for step := 0; step < 70; step++ {
		// The clock moves by a minute to a day and a half, so checkpoints
		// land on both sides of hour and day boundaries and of deadlines.
		clock.Advance(time.Duration(rng.IntN(36*60)+1) * time.Minute)
		now := clock.Now()
		msg := &ingest.Message{}
		switch rng.IntN(8) {
		case 0, 1:
			if err := e.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		case 2:
			users := []string{fmt.Sprintf("u%d", rng.IntN(45)), fmt.Sprintf("u%d", rng.IntN(45))}
			msg.Upload = &ingest.StaticUpload{Segment: "beta", Users: users, Replace: rng.IntN(2) == 0}
			ref.Upload("beta", users, msg.Upload.Replace)
		default:
			msg.Batch = randomEvents(rng, now, names, terms)
			ref.Apply(msg.Batch, now)
		}
		if msg.Upload != nil || len(msg.Batch.Events)+len(msg.Batch.Profiles) > 0 {
			seq++
			msg.Seq = seq
			if err := e.Apply(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range segs {
			want := ref.Members(s.ID, now)
			got := members(t, e, s.ID)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d at %s: segment %s\n got %v\nwant %v", step, now.Format(time.RFC3339), s.ID, got, want)
			}
			nonEmpty[s.ID] = nonEmpty[s.ID] || len(got) > 0
		}
	}
	// The generator must exercise every rule, or the comparison proves little.
	for _, s := range segs {
		if !nonEmpty[s.ID] {
			t.Errorf("segment %s was empty at every checkpoint", s.ID)
		}
	}
}

func randomEvents(rng *rand.Rand, now time.Time, names, terms []string) rules.Batch {
	var b rules.Batch
	for range rng.IntN(40) + 1 {
		user := fmt.Sprintf("u%d", rng.IntN(30))
		// Mostly recent, some days late and out of order, some beyond
		// retention, a few ahead of the clock (within and beyond the skew).
		at := now.Add(-time.Duration(rng.IntN(4*24*60)) * time.Minute)
		switch rng.IntN(12) {
		case 0, 1:
			at = now.Add(-time.Duration(rng.IntN(24*(testRetentionDays+3))) * time.Hour)
		case 2:
			at = now.Add(time.Duration(rng.IntN(10)) * time.Minute)
		case 3, 4, 5:
			at = now.Add(-time.Duration(rng.IntN(6*60)) * time.Minute)
		}
		ev := rules.Event{User: user, Name: names[rng.IntN(len(names))], Time: at.UnixMilli()}
		switch ev.Name {
		case "pay":
			if rng.IntN(5) > 0 {
				ev.Props = map[string]any{"amount": float64(rng.IntN(100))}
			}
		case "search":
			ev.Props = map[string]any{"term": terms[rng.IntN(len(terms))]}
		}
		b.Events = append(b.Events, ev)
	}
	for range rng.IntN(8) {
		user := fmt.Sprintf("u%d", rng.IntN(40))
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
