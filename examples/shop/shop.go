// Package shop generates a deterministic, synthetic e-commerce event stream
// for demos and tests of segd: user profiles, browsing sessions, carts,
// orders and payments with realistic drop-offs, coupons, campaigns, a sign-up
// funnel and churning users. Items come out in event-time order as
// [api.Item] values, ready to be published as ingest batches (see [Publish]).
//
// The stream is a pure function of [Config]: the same seed, user count, span
// and location give the same items, and nothing reads the wall clock or
// global random state.
package shop

import (
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"time"

	"github.com/segd/segd/bus/api"
)

// Event names the generator emits. Numeric props are float64 (as JSON
// decoding yields them); amount and price are in currency units, items is a
// count, times (expires_at) are Unix milliseconds.
const (
	// EventPageView has props page, referrer.
	EventPageView = "page_view"
	// EventSearch has props term.
	EventSearch = "search"
	// EventAddToCart has props sku, price, category.
	EventAddToCart = "add_to_cart"
	// EventCheckout has props amount, items, and lat, lon: where it
	// happened (the user's city, or for some, a trip to Paris).
	EventCheckout = "checkout"
	// EventSubmitOrder has props order_id, amount, items, and coupon_id when
	// a coupon paid part of it.
	EventSubmitOrder = "submit_order"
	// EventPay has props order_id, amount, method.
	EventPay = "pay"
	// EventCouponReceived has props coupon_id, campaign, value, expires_at.
	EventCouponReceived = "coupon_received"
	// EventCouponUsed has props coupon_id, order_id.
	EventCouponUsed = "coupon_used"
	// EventCampaignJoin has props campaign, channel (online or offline).
	EventCampaignJoin = "campaign_join"
	// EventSignupStart has props channel.
	EventSignupStart = "signup_start"
	// EventSignupStep has props step (1, 2 or 3).
	EventSignupStep = "signup_step"
	// EventSignupComplete has props channel.
	EventSignupComplete = "signup_complete"
)

// Events returns every event name the generator emits.
func Events() []string {
	return []string{
		EventPageView, EventSearch, EventAddToCart, EventCheckout, EventSubmitOrder,
		EventPay, EventCouponReceived, EventCouponUsed, EventCampaignJoin,
		EventSignupStart, EventSignupStep, EventSignupComplete,
	}
}

// Config describes a synthetic stream.
type Config struct {
	// Seed selects the stream; the same Config gives the same items.
	Seed int64
	// Users is the number of users; 0 means 3000.
	Users int
	// Start and End bound event time: items have Start <= time < End. A zero
	// End is Start plus 28 days; a zero Start is End minus 28 days (and both
	// zero is 28 days from 2025-01-01 UTC).
	Start, End time.Time
	// Location is where users live, for their daily rhythm; nil means UTC.
	Location *time.Location
	// Activity scales every user's session rate; 0 means 1. A demo that
	// wants a busier live stream can raise it.
	Activity float64
}

// Generator produces the items of a Config in event-time order. It is not
// safe for concurrent use.
type Generator struct {
	loc      *time.Location
	start    int64
	end      int64
	activity float64
	users    []*user
	heap     []*user
	catalog  []product
	count    int
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	const span = 28 * 24 * time.Hour
	switch {
	case cfg.Start.IsZero() && cfg.End.IsZero():
		cfg.Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		cfg.End = cfg.Start.Add(span)
	case cfg.Start.IsZero():
		cfg.Start = cfg.End.Add(-span)
	case cfg.End.IsZero():
		cfg.End = cfg.Start.Add(span)
	}
	if cfg.Users <= 0 {
		cfg.Users = 3000
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Activity <= 0 {
		cfg.Activity = 1
	}
	g := &Generator{
		loc:      cfg.Location,
		start:    cfg.Start.UnixMilli(),
		end:      cfg.End.UnixMilli(),
		activity: cfg.Activity,
	}
	seed := uint64(cfg.Seed)
	g.catalog = newCatalog(rand.New(rand.NewPCG(seed, 0x5eed_ca7a_1090)))
	g.users = make([]*user, cfg.Users)
	for i := range g.users {
		u := g.newUser(i, rand.New(rand.NewPCG(seed, uint64(i)+1)))
		g.users[i] = u
		if u.key() < math.MaxInt64 {
			g.heap = append(g.heap, u)
		}
	}
	for i := len(g.heap)/2 - 1; i >= 0; i-- {
		g.down(i)
	}
	return g
}

// UserID returns the id of the n-th demo user, counting from 1: "u00001".
func UserID(n int) string { return fmt.Sprintf("u%05d", n) }

// End returns the current end of the stream's event time.
func (g *Generator) End() time.Time { return time.UnixMilli(g.end).In(g.loc) }

// Count returns how many items Next has returned so far.
func (g *Generator) Count() int { return g.count }

// Advance moves the end of event time forward to end (an earlier end is
// ignored), so that Next goes on with the same users: a demo backfills
// history and then calls Advance with the current time, again and again, to
// trickle live events.
func (g *Generator) Advance(end time.Time) {
	if e := end.UnixMilli(); e > g.end {
		g.end = e
	}
}

// SetActivity changes the multiplier of every user's session rate from End
// on (f <= 0 means 1): the sessions not yet started are drawn again from End,
// which a Poisson process allows. A demo backfills at the realistic rate and
// then raises it for a livelier live stream.
func (g *Generator) SetActivity(f float64) {
	if f <= 0 {
		f = 1
	}
	g.activity = f
	for _, u := range g.heap {
		if u.started && u.nextSession != never && u.nextSession >= g.end {
			g.scheduleSession(u, g.end)
		}
	}
	for i := len(g.heap)/2 - 1; i >= 0; i-- {
		g.down(i)
	}
}

// Next returns the next item in event-time order, or false when every item
// before End has been returned. Item.Time is Unix milliseconds (int64).
func (g *Generator) Next() (api.Item, bool) {
	for len(g.heap) > 0 {
		u := g.heap[0]
		k := u.key()
		if k >= g.end {
			return api.Item{}, false
		}
		var it api.Item
		emitted := false
		switch {
		case len(u.pending) > 0 && u.pending[0].t == k:
			it = u.pending[0].item
			u.pending[0] = pend{}
			u.pending = u.pending[1:]
			emitted = true
		case u.nextCoupon == k:
			g.coupon(u)
		default:
			g.session(u)
		}
		if u.key() == math.MaxInt64 {
			last := len(g.heap) - 1
			g.heap[0] = g.heap[last]
			g.heap[last] = nil
			g.heap = g.heap[:last]
		}
		if len(g.heap) > 0 {
			g.down(0)
		}
		if emitted {
			g.count++
			return it, true
		}
	}
	return api.Item{}, false
}

// All returns the remaining items before End, in event-time order.
func (g *Generator) All() iter.Seq[api.Item] {
	return func(yield func(api.Item) bool) {
		for {
			it, ok := g.Next()
			if !ok || !yield(it) {
				return
			}
		}
	}
}

// Until advances End to t and returns the items up to it: the live-mode
// helper. Each call yields only items not yielded before.
func (g *Generator) Until(t time.Time) iter.Seq[api.Item] {
	g.Advance(t)
	return g.All()
}

func less(a, b *user) bool {
	ka, kb := a.key(), b.key()
	if ka != kb {
		return ka < kb
	}
	return a.idx < b.idx
}

func (g *Generator) down(i int) {
	h := g.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && less(h[r], h[l]) {
			m = r
		}
		if !less(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Time constants in milliseconds.
const (
	second = int64(1000)
	minute = 60 * second
	hour   = 60 * minute
	day    = 24 * hour
)

// never marks a process with no next occurrence.
const never = int64(math.MaxInt64)

type pend struct {
	t    int64
	item api.Item
}

type cartLine struct {
	sku   string
	price float64
}

type user struct {
	idx int
	id  string
	rng *rand.Rand

	rate     float64 // base sessions per day
	newUser  bool    // arrives through the sign-up funnel
	churnAt  int64   // goes quiet from here (0: never)
	returnAt int64   // comes back from here (0: never)
	joinAt   int64   // joins campaign at first session from here (0: never)
	campaign string

	nextSession int64
	nextCoupon  int64
	pending     []pend

	started   bool
	joined    bool
	signedUp  bool
	abandoned bool
	retry     bool
	vip       bool
	plan      string
	city      string
	orders    int
	coupons   int
	spent     float64
	cart      []cartLine
	lastTerm  string
}

func (u *user) key() int64 {
	k := min(u.nextSession, u.nextCoupon)
	if len(u.pending) > 0 && u.pending[0].t < k {
		k = u.pending[0].t
	}
	return k
}

// push inserts an item at time t, after any item at the same time.
func (u *user) push(t int64, name string, props map[string]any) {
	u.pushItem(t, api.Item{User: u.id, Event: name, Time: t, Props: props})
}

func (u *user) pushItem(t int64, it api.Item) {
	i := len(u.pending)
	for i > 0 && u.pending[i-1].t > t {
		i--
	}
	u.pending = append(u.pending, pend{})
	copy(u.pending[i+1:], u.pending[i:])
	u.pending[i] = pend{t: t, item: it}
}

func (u *user) profile(t int64, attrs map[string]any) {
	u.pushItem(t, api.Item{User: u.id, Time: t, Profile: attrs})
}

func (g *Generator) newUser(i int, rng *rand.Rand) *user {
	u := &user{idx: i, id: UserID(i + 1), rng: rng}
	span := g.end - g.start
	// Power-law activity: Pareto sessions per day, capped.
	u.rate = min(0.3*math.Pow(1-rng.Float64(), -1/1.3), 12)
	u.newUser = rng.Float64() < 0.35
	var arrival int64
	if u.newUser {
		arrival = g.start + rng.Int64N(max(span, 1))
	} else {
		arrival = g.start + rng.Int64N(max(min(3*day, span/4), 1))
	}
	u.nextSession = arrival
	u.nextCoupon = never
	if rng.Float64() < 0.45 {
		u.nextCoupon = arrival + day + int64(rng.ExpFloat64()*12*float64(day))
	}
	if rng.Float64() < 0.3 {
		u.joinAt = arrival + int64(rng.ExpFloat64()*10*float64(day))
		u.campaign = pick(rng, campaigns)
	}
	// Churners: active users who go quiet before the last two weeks.
	if !u.newUser && u.rate >= 0.8 && rng.Float64() < 0.3 && span >= 4*day {
		quiet := min(14*day, span/2)
		u.churnAt = g.end - quiet - rng.Int64N(max(min(5*day, span/8), 1))
		u.churnAt = max(u.churnAt, arrival+day)
		if rng.Float64() < 0.2 {
			u.returnAt = g.end - day - rng.Int64N(max(min(4*day, quiet/2), 1))
		}
	}
	return u
}

// quiet reports whether t falls in the user's churned, silent period.
func (u *user) quiet(t int64) bool {
	return u.churnAt > 0 && t >= u.churnAt && (u.returnAt == 0 || t < u.returnAt)
}

// diurnal is the relative activity by local hour of day.
var diurnal = [24]float64{
	0.15, 0.08, 0.05, 0.04, 0.04, 0.06, 0.15, 0.35, 0.55, 0.65, 0.7, 0.75,
	0.85, 0.75, 0.7, 0.7, 0.7, 0.75, 0.85, 0.95, 1, 1, 0.85, 0.5,
}

// diurnalMean is the mean of diurnal, so that a user's rate is per day.
var diurnalMean = func() float64 {
	s := 0.0
	for _, w := range diurnal {
		s += w
	}
	return s / 24
}()

// maxBoost is the largest rate multiplier: after joining a campaign.
const maxBoost = 2.2

// scheduleSession draws the next session time after t by thinning a
// Poisson process.
func (g *Generator) scheduleSession(u *user, t int64) {
	maxRate := u.rate * g.activity * maxBoost / diurnalMean
	for range 10000 {
		t += int64(u.rng.ExpFloat64()/maxRate*float64(day)) + minute
		if u.quiet(t) {
			if u.returnAt == 0 {
				u.nextSession = never
				return
			}
			t = u.returnAt
		}
		m := 1.0
		if u.joined {
			m = maxBoost
		}
		if u.churnAt > 0 && t >= u.churnAt {
			m *= 0.6
		}
		if u.abandoned {
			m *= 0.35
		}
		m *= diurnal[time.UnixMilli(t).In(g.loc).Hour()]
		if u.rng.Float64()*maxBoost < m {
			// Accepted with probability m/maxBoost; m includes diurnal.
			u.nextSession = t
			return
		}
	}
	u.nextSession = t
}

func (g *Generator) coupon(u *user) {
	t := u.nextCoupon
	rng := u.rng
	winback := false
	if u.quiet(t) {
		if u.returnAt == 0 {
			u.nextCoupon = never
			return
		}
		// A win-back coupon shortly before the user comes back.
		t = max(t, u.returnAt-hour-rng.Int64N(6*hour))
		winback = true
	}
	u.coupons++
	c := couponKinds[rng.IntN(len(couponKinds))]
	if winback {
		c = couponKind{"winback", 15, 7}
	}
	id := fmt.Sprintf("c-%s-%s-%d", c.campaign, u.id, u.coupons)
	expires := t + int64(c.days)*day
	u.push(t, EventCouponReceived, map[string]any{
		"coupon_id": id, "campaign": c.campaign, "value": c.value, "expires_at": float64(expires),
	})
	// Only some recipients use their coupon, more often the active ones.
	p := 0.15 + 0.3*min(1, u.rate/2)
	at := t + int64((0.02+0.9*rng.Float64())*float64(expires-t))
	if winback {
		p = 0.6
		at = u.returnAt + rng.Int64N(2*day)
	}
	if rng.Float64() < p && !u.quiet(at) {
		g.couponPurchase(u, at, id, c.value)
	}
	u.nextCoupon = t + day + int64(rng.ExpFloat64()*12*float64(day))
	if winback {
		u.nextCoupon = max(u.nextCoupon, u.returnAt+day)
	}
}

func (g *Generator) couponPurchase(u *user, t int64, couponID string, value float64) {
	rng := u.rng
	u.push(t, EventPageView, map[string]any{"page": "cart", "referrer": "push"})
	n := 1 + rng.IntN(3)
	amount := 0.0
	for range n {
		amount += g.catalog[rng.IntN(len(g.catalog))].price
	}
	amount = math.Max(round2(amount-value), 1)
	t += 20*second + rng.Int64N(2*minute)
	u.push(t, EventCheckout, withPlace(u, t, map[string]any{"amount": amount, "items": float64(n)}))
	u.orders++
	order := fmt.Sprintf("o-%s-%d", u.id, u.orders)
	t += 10*second + rng.Int64N(minute)
	u.push(t, EventSubmitOrder, map[string]any{"order_id": order, "amount": amount, "items": float64(n), "coupon_id": couponID})
	t += 10*second + rng.Int64N(3*minute)
	g.pay(u, t, order, amount)
	u.push(t+second, EventCouponUsed, map[string]any{"coupon_id": couponID, "order_id": order})
}

func (g *Generator) pay(u *user, t int64, order string, amount float64) {
	u.push(t, EventPay, map[string]any{"order_id": order, "amount": amount, "method": pick(u.rng, payMethods)})
	u.spent += amount
	if !u.vip && u.spent >= 5000 {
		u.vip = true
		u.profile(t+second, map[string]any{"is_vip": true})
	}
}

// session generates one session at u.nextSession and schedules the next.
func (g *Generator) session(u *user) {
	t := u.nextSession
	rng := u.rng
	step := func() int64 {
		t += 5*second + rng.Int64N(90*second)
		return t
	}
	if !u.started {
		u.started = true
		u.plan = pick(rng, plans)
		u.city = pick(rng, cities)
		gender := pick(rng, genders)
		age := int(math.Round(33 + 11*rng.NormFloat64()))
		age = max(16, min(70, age))
		u.profile(t, map[string]any{
			"age": float64(age), "gender": gender, "city": u.city,
			"signup_channel": pick(rng, channels), "is_vip": false, "plan": u.plan,
		})
		if u.newUser {
			g.signup(u, &t, false)
			if !u.signedUp {
				g.scheduleSession(u, t)
				return
			}
		}
	} else if u.newUser && !u.signedUp && u.retry {
		u.retry = false
		g.signup(u, &t, true)
	}
	if u.joinAt > 0 && !u.joined && t >= u.joinAt {
		u.joined = true
		ch := "online"
		if rng.Float64() < 0.35 {
			ch = "offline"
		}
		u.push(step(), EventCampaignJoin, map[string]any{"campaign": u.campaign, "channel": ch})
	}
	// Occasional profile changes.
	if r := rng.Float64(); r < 0.012 && u.plan != "premium" {
		if u.plan == "free" {
			u.plan = "plus"
		} else {
			u.plan = "premium"
		}
		u.profile(t, map[string]any{"plan": u.plan})
	} else if r < 0.016 {
		u.city = pick(rng, cities)
		u.profile(t, map[string]any{"city": u.city})
	}

	ref := pick(rng, referrers)
	views := 1 + int(rng.ExpFloat64()*3)
	views = min(views, 20)
	u.push(step(), EventPageView, map[string]any{"page": pick(rng, landing), "referrer": ref})
	intent := 0.12 + 0.2*rng.Float64()
	if u.joined {
		intent += 0.08
	}
	for range views {
		switch r := rng.Float64(); {
		case r < 0.2:
			term := pick(rng, terms)
			if u.lastTerm != "" && rng.Float64() < 0.3 {
				term = u.lastTerm
			}
			u.lastTerm = term
			u.push(step(), EventSearch, map[string]any{"term": term})
			u.push(step(), EventPageView, map[string]any{"page": "search_results", "referrer": "internal"})
		case r < 0.75:
			p := g.catalog[rng.IntN(len(g.catalog))]
			u.push(step(), EventPageView, map[string]any{"page": "product/" + p.sku, "referrer": "internal"})
			if rng.Float64() < intent {
				u.cart = append(u.cart, cartLine{p.sku, p.price})
				u.push(step(), EventAddToCart, map[string]any{"sku": p.sku, "price": p.price, "category": p.category})
			}
		default:
			u.push(step(), EventPageView, map[string]any{"page": pick(rng, pages), "referrer": "internal"})
		}
	}
	if len(u.cart) > 0 && rng.Float64() < 0.45 {
		amount := 0.0
		for _, l := range u.cart {
			amount += l.price
		}
		amount = round2(amount)
		n := float64(len(u.cart))
		at := step()
		u.push(at, EventCheckout, withPlace(u, at, map[string]any{"amount": amount, "items": n}))
		if rng.Float64() < 0.75 {
			u.orders++
			order := fmt.Sprintf("o-%s-%d", u.id, u.orders)
			u.push(step(), EventSubmitOrder, map[string]any{"order_id": order, "amount": amount, "items": n})
			u.cart = u.cart[:0]
			switch r := rng.Float64(); {
			case r < 0.55:
				g.pay(u, step(), order, amount)
			case r < 0.72 && !u.quiet(t+30*hour):
				g.pay(u, t+hour+rng.Int64N(29*hour), order, amount)
			}
		}
	} else if rng.Float64() < 0.3 {
		u.cart = u.cart[:0]
	}
	g.scheduleSession(u, t)
}

// signup runs the sign-up funnel; most drop-offs are at the last step.
func (g *Generator) signup(u *user, t *int64, again bool) {
	rng := u.rng
	next := func() int64 {
		*t += 15*second + rng.Int64N(2*minute)
		return *t
	}
	ch := pick(rng, channels)
	u.push(next(), EventSignupStart, map[string]any{"channel": ch})
	cont := [3]float64{0.88, 0.85, 0.8}
	if again {
		cont = [3]float64{0.97, 0.97, 0.97}
	}
	for s := 1; s <= 3; s++ {
		if rng.Float64() >= cont[s-1] {
			u.abandoned = true
			return
		}
		u.push(next(), EventSignupStep, map[string]any{"step": float64(s)})
	}
	if !again && rng.Float64() < 0.55 {
		// Gave up at the last step; some come back later to finish.
		u.abandoned = true
		u.retry = rng.Float64() < 0.25
		return
	}
	u.signedUp = true
	u.abandoned = false
	u.push(next(), EventSignupComplete, map[string]any{"channel": ch})
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
