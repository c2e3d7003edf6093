package host

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// storyWorld runs the example rules (examples/rules) on an engine with a
// manual clock, and keeps the reference evaluator in step with it.
type storyWorld struct {
	t     *testing.T
	e     *engine.Engine
	ref   *reference.Evaluator
	clock *engine.ManualClock
	seq   uint64
}

func newStoryWorld(t *testing.T, now time.Time) *storyWorld {
	t.Helper()
	segs, err := LoadRules(rules.Options{}, "../examples/rules")
	if err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(now)
	e := engine.New(engine.Config{Segments: segs, Clock: clock, TickInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &storyWorld{t: t, e: e, clock: clock,
		ref: reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)}
}

func (w *storyWorld) send(b rules.Batch) {
	w.t.Helper()
	w.seq++
	if err := w.e.Apply(context.Background(), &bus.IngestMessage{Seq: w.seq, Batch: b}); err != nil {
		w.t.Fatal(err)
	}
	w.ref.Apply(b, w.clock.Now())
}

func (w *storyWorld) advance(d time.Duration) {
	w.t.Helper()
	w.clock.Advance(d)
	if err := w.e.Tick(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// expect checks a segment's members, and that the reference agrees.
func (w *storyWorld) expect(segment string, want ...string) {
	w.t.Helper()
	got, err := w.e.Members(segment)
	if err != nil {
		w.t.Fatal(err)
	}
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		w.t.Errorf("%s = %v, want %v", segment, got, want)
	}
	if ref := w.ref.Members(segment, w.clock.Now()); !slices.Equal(got, ref) && !(len(got) == 0 && len(ref) == 0) {
		w.t.Errorf("%s = %v, but the reference says %v", segment, got, ref)
	}
}

func ev(user, name string, at time.Time, props ...any) rules.Event {
	p := map[string]any{}
	for i := 0; i+1 < len(props); i += 2 {
		p[props[i].(string)] = props[i+1]
	}
	return rules.Event{User: user, Name: name, Time: at.UnixMilli(), Props: p}
}

var storyNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func daysAgo(n int) time.Time { return storyNow.AddDate(0, 0, -n) }

func TestStoryCampaignJoiners(t *testing.T) {
	t.Parallel()
	w := newStoryWorld(t, storyNow)
	b := rules.Batch{Events: []rules.Event{
		ev("festival", "campaign_join", daysAgo(20), "campaign", "618_festival", "channel", "online"),
		ev("spring", "campaign_join", daysAgo(10), "campaign", "spring_sale", "channel", "online"),
		ev("expo", "campaign_join", daysAgo(10), "campaign", "offline_expo_shanghai", "channel", "offline"),
	}}
	for d := 0; d < 4; d++ { // "spring" visits on four days of the last week
		b.Events = append(b.Events, ev("spring", "page_view", daysAgo(d)))
	}
	b.Events = append(b.Events, ev("expo", "page_view", daysAgo(1)), ev("expo", "page_view", daysAgo(2)))
	w.send(b)
	w.expect("joined_618_festival", "festival")
	w.expect("joined_offline_expo", "expo")
	w.expect("engaged_after_campaign", "spring")
}

func TestStorySignupGaveUp(t *testing.T) {
	t.Parallel()
	w := newStoryWorld(t, storyNow)
	w.send(rules.Batch{Events: []rules.Event{
		ev("gave-up", "signup_step", storyNow.Add(-2*time.Hour), "step", 3.0),
		ev("completed", "signup_step", storyNow.Add(-2*time.Hour), "step", 3.0),
		ev("completed", "signup_complete", storyNow.Add(-110*time.Minute)),
		ev("step-two", "signup_step", storyNow.Add(-2*time.Hour), "step", 2.0),
		ev("just-now", "signup_step", storyNow.Add(-30*time.Minute), "step", 3.0),
	}})
	w.expect("signup_gave_up", "gave-up")
	// The clock alone completes the drop-off for "just-now": the hour runs
	// out with no event.
	w.advance(30 * time.Minute)
	w.expect("signup_gave_up", "gave-up")
	w.advance(time.Millisecond)
	w.expect("signup_gave_up", "gave-up", "just-now")
	// A week later they leave: the window has passed their step 3.
	w.advance(7 * 24 * time.Hour)
	w.expect("signup_gave_up")
}

func TestStoryGoneQuietAndBack(t *testing.T) {
	t.Parallel()
	w := newStoryWorld(t, storyNow)
	var b rules.Batch
	for i := 0; i < 25; i++ {
		b.Events = append(b.Events,
			ev("quiet", "page_view", daysAgo(8+i%13)),
			ev("still-here", "page_view", daysAgo(8+i%13)))
	}
	for i := 0; i < 5; i++ {
		b.Events = append(b.Events, ev("light", "page_view", daysAgo(8+i)))
	}
	b.Events = append(b.Events,
		ev("still-here", "page_view", daysAgo(1)),
		ev("back", "page_view", daysAgo(15)), ev("back", "page_view", daysAgo(1)),
		ev("new", "page_view", daysAgo(2)),
		ev("old", "page_view", daysAgo(20)), ev("old", "page_view", daysAgo(2)))
	w.send(b)
	w.expect("gone_quiet", "quiet")
	// "old" came back too: active 20 days ago, quiet from 9 to 3 days ago,
	// active again 2 days ago.
	w.expect("came_back", "back", "old")
	w.expect("new_this_week", "new")
	// Two weeks on, the quiet user's busy days have left the 14-day period.
	w.advance(14 * 24 * time.Hour)
	w.expect("gone_quiet")
}

func TestStoryCouponsAndOrders(t *testing.T) {
	t.Parallel()
	w := newStoryWorld(t, storyNow)
	w.send(rules.Batch{Events: []rules.Event{
		ev("unused", "coupon_received", daysAgo(3), "coupon_id", "c1"),
		ev("used", "coupon_received", daysAgo(3), "coupon_id", "c2"),
		ev("used", "coupon_used", daysAgo(2), "coupon_id", "c2"),
		ev("unpaid", "submit_order", daysAgo(2), "amount", 30.0),
		ev("paid", "submit_order", daysAgo(2), "amount", 30.0),
		ev("paid", "pay", daysAgo(2).Add(time.Hour), "amount", 30.0),
		ev("late-payer", "submit_order", daysAgo(3), "amount", 30.0),
		ev("late-payer", "pay", daysAgo(3).Add(26*time.Hour), "amount", 30.0),
		ev("buyer", "checkout", daysAgo(1), "amount", 1500.0),
		ev("buyer", "submit_order", daysAgo(1).Add(time.Minute), "amount", 1500.0),
		ev("buyer", "pay", daysAgo(1).Add(2*time.Minute), "amount", 1500.0),
		ev("buyer", "pay", daysAgo(5), "amount", 600.0),
		ev("cart", "add_to_cart", daysAgo(1), "price", 20.0),
		ev("buyer", "add_to_cart", daysAgo(1), "price", 20.0),
	}})
	w.expect("coupon_unused", "unused")
	// A payment after the 24 hours does not undo the drop-off: the order
	// went unpaid for a day, which is what the segment finds.
	w.expect("unpaid_orders", "late-payer", "unpaid")
	w.expect("converted_24h", "buyer")
	w.expect("spent_2000_30d", "buyer")
	w.expect("cart_abandoners", "cart")
}

func TestStoryVIPAtRisk(t *testing.T) {
	t.Parallel()
	w := newStoryWorld(t, storyNow)
	w.send(rules.Batch{
		Profiles: []rules.ProfileUpdate{
			{User: "vip-quiet", Attrs: map[string]any{"is_vip": true}},
			{User: "vip-active", Attrs: map[string]any{"is_vip": true}},
			{User: "regular", Attrs: map[string]any{"is_vip": false}},
		},
		Events: []rules.Event{ev("vip-active", "page_view", daysAgo(1)), ev("vip-quiet", "page_view", daysAgo(20))},
	})
	w.expect("vip", "vip-active", "vip-quiet")
	w.expect("vip_at_risk", "vip-quiet")
	// Losing VIP status takes the user out of the composite at once.
	w.send(rules.Batch{Profiles: []rules.ProfileUpdate{{User: "vip-quiet", Attrs: map[string]any{"is_vip": nil}}}})
	w.expect("vip_at_risk")
}
