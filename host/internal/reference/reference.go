// Package reference is the naive evaluator that segd's tests hold the engine
// to: it keeps every raw event and profile update and computes segment
// membership straight from the definitions in docs/rules.md, with no index,
// no bucket and no incremental state. It is slow on purpose and imported
// only by tests.
package reference

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/segd/segd/rules"
)

// Evaluator accumulates what a segd has been sent and answers membership by
// the definitions.
type Evaluator struct {
	loc       *time.Location
	skew      time.Duration
	retention int
	segments  map[string]*rules.Segment
	events    map[string][]rules.Event // accepted events by user
	profiles  map[string]map[string]any
	users     map[string]bool
	static    map[string]map[string]bool
}

// New returns an evaluator for segs with calendar days in loc, rejecting
// events more than skew ahead of the clock and dropping those older than
// retentionDays, as the engine does.
func New(segs []*rules.Segment, loc *time.Location, skew time.Duration, retentionDays int) *Evaluator {
	r := &Evaluator{loc: loc, skew: skew, retention: retentionDays, segments: map[string]*rules.Segment{},
		events: map[string][]rules.Event{}, profiles: map[string]map[string]any{}, users: map[string]bool{},
		static: map[string]map[string]bool{}}
	for _, s := range segs {
		r.segments[s.ID] = s
	}
	return r
}

// date is a calendar date as a comparable number of days.
func (r *Evaluator) date(ms int64) int {
	y, m, d := time.UnixMilli(ms).In(r.loc).Date()
	return int(time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Unix() / 86400)
}

func dateOf(d rules.Date) int {
	return int(time.Date(d.Year, d.Month, d.Day, 12, 0, 0, 0, time.UTC).Unix() / 86400)
}

// Apply records a batch applied when the clock read now.
func (r *Evaluator) Apply(b rules.Batch, now time.Time) {
	for _, ev := range b.Events {
		tooNew := time.UnixMilli(ev.Time).Sub(now) > r.skew
		tooOld := r.date(now.UnixMilli())-r.date(ev.Time) >= r.retention
		if tooNew || tooOld {
			continue
		}
		r.users[ev.User] = true
		r.events[ev.User] = append(r.events[ev.User], ev)
	}
	for _, up := range b.Profiles {
		r.users[up.User] = true
		p := r.profiles[up.User]
		if p == nil {
			p = map[string]any{}
			r.profiles[up.User] = p
		}
		for k, v := range up.Attrs {
			if v == nil {
				delete(p, k)
			} else {
				p[k] = v
			}
		}
	}
}

// Upload records a static segment upload.
func (r *Evaluator) Upload(segment string, users []string, replace bool) {
	if replace || r.static[segment] == nil {
		r.static[segment] = map[string]bool{}
	}
	for _, u := range users {
		r.users[u] = true
		r.static[segment][u] = true
	}
}

// Users returns every user seen, sorted.
func (r *Evaluator) Users() []string {
	out := make([]string, 0, len(r.users))
	for u := range r.users {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Members returns the segment's members when the clock reads now, sorted.
func (r *Evaluator) Members(segment string, now time.Time) []string {
	var out []string
	for _, u := range r.Users() {
		if r.Member(segment, u, now) {
			out = append(out, u)
		}
	}
	return out
}

// Member reports whether user is in the segment when the clock reads now.
func (r *Evaluator) Member(segment, user string, now time.Time) bool {
	if !r.users[user] {
		return false
	}
	s := r.segments[segment]
	if s.Static {
		return r.static[segment][user]
	}
	return r.holds(s.Condition, user, now.UnixMilli())
}

func (r *Evaluator) holds(c rules.Condition, user string, now int64) bool {
	switch c := c.(type) {
	case *rules.All:
		for _, k := range c.Of {
			if !r.holds(k, user, now) {
				return false
			}
		}
		return true
	case *rules.Any:
		for _, k := range c.Of {
			if r.holds(k, user, now) {
				return true
			}
		}
		return false
	case *rules.Not:
		return !r.holds(c.Of, user, now)
	case *rules.InSegment:
		return r.Member(c.Segment, user, time.UnixMilli(now))
	case *rules.ProfileCondition:
		bits := rules.NewBits(1)
		_ = c.Predicate.MatchProfiles(context.Background(), []rules.Profile{{User: user, Attrs: r.profiles[user]}}, bits)
		return bits.Has(0)
	case *rules.Did:
		return r.did(c, user, now)
	case *rules.Sequence:
		return r.sequence(c, user, now)
	}
	panic(fmt.Sprintf("reference: unknown condition %T", c))
}

// inWindow applies a window's definition to an event time.
func (r *Evaluator) inWindow(w rules.Window, t, now int64) bool {
	switch w.Kind {
	case rules.Between:
		d := r.date(t)
		return d >= dateOf(w.Start) && d <= dateOf(w.End)
	case rules.Since:
		d := r.date(t)
		return d >= dateOf(w.Start) && d <= r.date(now)
	}
	var age int
	if w.Unit == rules.Hour {
		hour := func(ms int64) int { return int(math.Floor(float64(ms) / float64(time.Hour/time.Millisecond))) }
		age = hour(now) - hour(t)
	} else {
		age = r.date(now) - r.date(t)
	}
	return age >= w.To && age <= w.From
}

// matches lists the user's events that a step matches, in time order.
func (r *Evaluator) matches(s rules.Step, user string) []rules.Event {
	var out []rules.Event
	for _, ev := range r.events[user] {
		named := false
		for _, n := range s.Events {
			named = named || n == ev.Name
		}
		if !named {
			continue
		}
		if s.Where != nil {
			bits := rules.NewBits(1)
			_ = s.Where.MatchEvents(context.Background(), []rules.Event{ev}, bits)
			if !bits.Has(0) {
				continue
			}
		}
		out = append(out, ev)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out
}

func (r *Evaluator) did(c *rules.Did, user string, now int64) bool {
	x, ok := r.didValue(c, user, now)
	return ok && c.Compare.Holds(x)
}

// DidValue is a did condition's aggregate over the user's matching events
// in its window when the clock reads now; ok is false for avg, min and
// max over no events (undefined).
func (r *Evaluator) DidValue(c *rules.Did, user string, now time.Time) (float64, bool) {
	return r.didValue(c, user, now.UnixMilli())
}

// Holds is the value of condition c (a part of a rule) for user now.
func (r *Evaluator) Holds(c rules.Condition, user string, now time.Time) bool {
	return r.holds(c, user, now.UnixMilli())
}

// Events returns the user's accepted events in the order they were applied.
func (r *Evaluator) Events(user string) []rules.Event { return r.events[user] }

// Profile returns the user's profile attributes (nil for none).
func (r *Evaluator) Profile(user string) map[string]any { return r.profiles[user] }

func (r *Evaluator) didValue(c *rules.Did, user string, now int64) (float64, bool) {
	var nums []float64
	count := 0
	days, values := map[int]bool{}, map[string]bool{}
	for _, ev := range r.matches(c.Step, user) {
		if !r.inWindow(c.Window, ev.Time, now) {
			continue
		}
		switch a := c.Aggregate; {
		case a.Numeric():
			if v, ok := ev.Props[a.Prop].(float64); ok && !math.IsNaN(v) {
				nums = append(nums, v)
			}
		case a.Func == rules.AggDistinct:
			if v, ok := ev.Props[a.Prop]; ok && v != nil {
				values[fmt.Sprint(v)] = true
			}
		}
		count++
		days[r.date(ev.Time)] = true
	}
	var x float64
	switch c.Aggregate.Func {
	case rules.AggCount:
		x = float64(count)
	case rules.AggDays:
		x = float64(len(days))
	case rules.AggDistinct:
		x = float64(len(values))
	case rules.AggSum:
		for _, v := range nums {
			x += v
		}
	default:
		if len(nums) == 0 {
			return 0, false // avg, min and max of nothing are undefined
		}
		x = nums[0]
		for _, v := range nums[1:] {
			switch c.Aggregate.Func {
			case rules.AggMin:
				x = math.Min(x, v)
			case rules.AggMax:
				x = math.Max(x, v)
			default:
				x += v
			}
		}
		if c.Aggregate.Func == rules.AggAvg {
			x /= float64(len(nums))
		}
	}
	return x, true
}

func (r *Evaluator) sequence(c *rules.Sequence, user string, now int64) bool {
	within := c.Within.Milliseconds()
	steps := make([][]rules.Event, len(c.Steps))
	for k, s := range c.Steps {
		steps[k] = r.matches(s, user)
	}
	var then []rules.Event
	if c.ThenNot != nil {
		then = r.matches(*c.ThenNot, user)
	}
	// chain reports whether steps k.. can follow time t, by a+within, each
	// strictly after the one before: tried over every choice.
	var chain func(k int, t, a int64) bool
	chain = func(k int, t, a int64) bool {
		if k == len(steps) {
			return true
		}
		for _, ev := range steps[k] {
			if ev.Time > t && ev.Time <= a+within && chain(k+1, ev.Time, a) {
				return true
			}
		}
		return false
	}
	for _, first := range steps[0] {
		a := first.Time
		if !r.inWindow(c.Window, a, now) {
			continue
		}
		if c.ThenNot == nil {
			if chain(1, a, a) {
				return true
			}
			continue
		}
		if now <= a+within {
			continue // the drop-off is not complete until within has run out
		}
		followed := false
		for _, b := range then {
			followed = followed || (b.Time > a && b.Time <= a+within)
		}
		if !followed {
			return true
		}
	}
	return false
}
