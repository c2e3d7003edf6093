package shop

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
)

var testEnd = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func testConfig(seed int64) Config {
	return Config{Seed: seed, Users: 1000, Start: testEnd.Add(-28 * 24 * time.Hour), End: testEnd}
}

func collect(g *Generator) []api.Item {
	var out []api.Item
	for it := range g.All() {
		out = append(out, it)
	}
	return out
}

func itemTime(t *testing.T, it api.Item) int64 {
	t.Helper()
	ms, ok := it.Time.(int64)
	if !ok {
		t.Fatalf("item time %T, want int64", it.Time)
	}
	return ms
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a := collect(New(testConfig(7)))
	b := collect(New(testConfig(7)))
	if len(a) == 0 {
		t.Fatal("no items")
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different items")
	}
	c := collect(New(testConfig(8)))
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds gave the same items")
	}
	// Items survive the wire.
	if _, err := json.Marshal(a[:100]); err != nil {
		t.Fatal(err)
	}
}

func TestOrderBoundsAndNames(t *testing.T) {
	t.Parallel()
	cfg := testConfig(1)
	cfg.Location = time.FixedZone("CST", 8*3600)
	items := collect(New(cfg))
	start, end := cfg.Start.UnixMilli(), cfg.End.UnixMilli()
	names := map[string]bool{}
	for _, n := range Events() {
		names[n] = true
	}
	seen := map[string]bool{}
	prev := int64(0)
	counts := map[string]int{}
	for i, it := range items {
		ms := itemTime(t, it)
		if ms < start || ms >= end {
			t.Fatalf("item %d at %d outside [%d, %d)", i, ms, start, end)
		}
		if ms < prev {
			t.Fatalf("item %d at %d before previous %d", i, ms, prev)
		}
		prev = ms
		if it.User == "" {
			t.Fatalf("item %d has no user", i)
		}
		if (it.Event == "") == (it.Profile == nil) {
			t.Fatalf("item %d is neither event nor profile, or both: %+v", i, it)
		}
		if it.Event != "" && !names[it.Event] {
			t.Fatalf("item %d: unknown event %q", i, it.Event)
		}
		if !seen[it.User] {
			seen[it.User] = true
			if it.Profile == nil {
				t.Fatalf("first item of %s is not a profile: %+v", it.User, it)
			}
			for _, k := range []string{"age", "gender", "city", "signup_channel", "is_vip", "plan"} {
				if _, ok := it.Profile[k]; !ok {
					t.Fatalf("first profile of %s lacks %s", it.User, k)
				}
			}
			if age := it.Profile["age"].(float64); age < 16 || age > 70 {
				t.Fatalf("age %v", age)
			}
		}
		counts[it.Event]++
	}
	for _, n := range Events() {
		if counts[n] == 0 {
			t.Errorf("no %s events", n)
		}
	}
	if len(seen) < cfg.Users*9/10 {
		t.Errorf("only %d of %d users appear", len(seen), cfg.Users)
	}
}

func TestStories(t *testing.T) {
	t.Parallel()
	cfg := testConfig(3)
	items := collect(New(cfg))
	end := cfg.End.UnixMilli()
	const day = int64(24 * time.Hour / time.Millisecond)

	orders := map[string]int64{} // order_id -> submit time
	paid := map[string]int64{}   // order_id -> pay time
	received := map[string]bool{}
	used := map[string]bool{}
	step3 := map[string]bool{}
	complete := map[string]bool{}
	first14 := map[string]int{}
	last14 := map[string]int{}
	lastDays := map[string]int{}
	quietMid := map[string]int{}
	joinAt := map[string]int64{}
	before, after := map[string]int{}, map[string]int{}
	for _, it := range items {
		ms := itemTime(t, it)
		if it.Event == "" {
			continue
		}
		switch it.Event {
		case EventSubmitOrder:
			orders[it.Props["order_id"].(string)] = ms
			if _, ok := it.Props["amount"].(float64); !ok {
				t.Fatalf("submit_order amount %T", it.Props["amount"])
			}
		case EventPay:
			paid[it.Props["order_id"].(string)] = ms
		case EventCouponReceived:
			received[it.Props["coupon_id"].(string)] = true
			if exp := int64(it.Props["expires_at"].(float64)); exp <= ms {
				t.Fatalf("coupon expires at %d before receipt %d", exp, ms)
			}
		case EventCouponUsed:
			id := it.Props["coupon_id"].(string)
			if !received[id] {
				t.Fatalf("coupon %s used before received", id)
			}
			used[id] = true
		case EventSignupStep:
			if it.Props["step"].(float64) == 3 {
				step3[it.User] = true
			}
		case EventSignupComplete:
			complete[it.User] = true
		case EventCampaignJoin:
			joinAt[it.User] = ms
		}
		switch {
		case ms < end-14*day:
			first14[it.User]++
		case ms < end-5*day:
			last14[it.User]++
			quietMid[it.User]++
		default:
			last14[it.User]++
			lastDays[it.User]++
		}
		if j, ok := joinAt[it.User]; ok && ms > j {
			after[it.User]++
		} else {
			before[it.User]++
		}
	}

	unpaid, latePaid := 0, 0
	for id, at := range orders {
		p, ok := paid[id]
		switch {
		case !ok || p-at > day:
			unpaid++
		case p-at > time.Hour.Milliseconds():
			latePaid++
		}
	}
	unused := 0
	for id := range received {
		if !used[id] {
			unused++
		}
	}
	gaveUp := 0
	for u := range step3 {
		if !complete[u] {
			gaveUp++
		}
	}
	churned, returned := 0, 0
	for u, n := range first14 {
		if n < 100 {
			continue
		}
		if last14[u] == 0 {
			churned++
		} else if quietMid[u] == 0 && lastDays[u] > 0 {
			returned++
		}
	}
	t.Logf("orders %d, unpaid in 24h %d, paid hours later %d; coupons %d, unused %d; step 3 %d, gave up %d; churned %d, returned %d",
		len(orders), unpaid, latePaid, len(received), unused, len(step3), gaveUp, churned, returned)
	if unpaid < len(orders)/5 || unpaid == len(orders) {
		t.Errorf("submit_order without pay in 24h: %d of %d", unpaid, len(orders))
	}
	if latePaid == 0 {
		t.Error("no orders paid hours later")
	}
	if unused < len(received)/3 || len(used) == 0 {
		t.Errorf("coupons: %d received, %d used", len(received), len(used))
	}
	if gaveUp < len(step3)/3 || len(complete) == 0 {
		t.Errorf("sign-up: %d reached step 3, %d completed", len(step3), len(complete))
	}
	if churned < 5 || returned == 0 {
		t.Errorf("churn: %d active early and silent in the last 14 days, %d came back", churned, returned)
	}

	// Users are more active after joining a campaign: compare events per
	// day of activity before and after the join, over joiners.
	var rb, ra float64
	start := cfg.Start.UnixMilli()
	for u, j := range joinAt {
		if j-start < 3*day || end-j < 3*day {
			continue
		}
		rb += float64(before[u]) / float64(j-start)
		ra += float64(after[u]) / float64(end-j)
	}
	if ra < 1.3*rb {
		t.Errorf("campaign joiners not more active after joining: %.3g vs %.3g", ra, rb)
	}
}

func TestLive(t *testing.T) {
	t.Parallel()
	cfg := testConfig(5)
	g := New(cfg)
	n := len(collect(g))
	if g.Count() != n {
		t.Fatalf("Count %d, want %d", g.Count(), n)
	}
	// Nothing more until End moves.
	if _, ok := g.Next(); ok {
		t.Fatal("item after End")
	}
	lo := cfg.End.UnixMilli()
	hi := cfg.End.Add(24 * time.Hour)
	var day1 []int64
	for it := range g.Until(hi) {
		day1 = append(day1, itemTime(t, it))
	}
	if len(day1) == 0 || !slices.IsSorted(day1) || day1[0] < lo || day1[len(day1)-1] >= hi.UnixMilli() {
		t.Fatalf("live day: %d items, sorted %v", len(day1), slices.IsSorted(day1))
	}
	g.SetActivity(10)
	day2 := 0
	for range g.Until(hi.Add(24 * time.Hour)) {
		day2++
	}
	if day2 < 4*len(day1) {
		t.Errorf("SetActivity(10): %d items in a day after %d", day2, len(day1))
	}
}

func BenchmarkGenerate(b *testing.B) {
	cfg := Config{Seed: 1, Users: 3000, Start: testEnd.Add(-28 * 24 * time.Hour), End: testEnd}
	n := 0
	for b.Loop() {
		for range New(cfg).All() {
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(n)/float64(b.N), "items/op")
}
