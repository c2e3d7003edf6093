// Package reference is the naive evaluator that segd's tests hold the engine
// to: it keeps every raw event and profile update and computes segment
// membership straight from the rule definitions, with no index, no bucket
// and no incremental state. It is slow on purpose and imported only by tests.
package reference

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/segd/segd/rules"
)

// Evaluator accumulates what a segd has been sent and answers membership by
// the definitions.
type Evaluator struct {
	loc      *time.Location
	skew     time.Duration
	events   []rules.Event // accepted events only
	profiles map[string]map[string]any
	users    map[string]bool
}

// New returns an evaluator for calendar days in loc, rejecting events more
// than skew ahead of the clock as the engine does.
func New(loc *time.Location, skew time.Duration) *Evaluator {
	return &Evaluator{loc: loc, skew: skew, profiles: map[string]map[string]any{}, users: map[string]bool{}}
}

// Apply records a batch applied when the clock read now.
func (r *Evaluator) Apply(b rules.Batch, now time.Time) {
	for _, ev := range b.Events {
		r.users[ev.User] = true
		if time.UnixMilli(ev.Time).Sub(now) <= r.skew {
			r.events = append(r.events, ev)
		}
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

// Users returns every user seen, sorted.
func (r *Evaluator) Users() []string {
	out := make([]string, 0, len(r.users))
	for u := range r.users {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// daysBetween counts calendar days in loc from a's date to b's date.
func (r *Evaluator) daysBetween(a, b time.Time) int {
	ya, ma, da := a.In(r.loc).Date()
	yb, mb, db := b.In(r.loc).Date()
	return int(time.Date(yb, mb, db, 12, 0, 0, 0, time.UTC).Sub(time.Date(ya, ma, da, 12, 0, 0, 0, time.UTC)).Hours() / 24)
}

// Member reports whether user is in seg when the clock reads now.
func (r *Evaluator) Member(seg *rules.Segment, user string, now time.Time) bool {
	if !r.users[user] {
		return false
	}
	if d := seg.Did; d != nil {
		n := 0
		for _, ev := range r.events {
			if ev.User != user || !slices.Contains(d.Events, ev.Name) {
				continue
			}
			// Inside the window: on today's date or one of the Days-1 before.
			age := r.daysBetween(time.UnixMilli(ev.Time), now)
			if age < 0 || age >= d.Window.Days {
				continue
			}
			if d.Where != nil {
				bits := rules.NewBits(1)
				_ = d.Where.MatchEvents(context.Background(), []rules.Event{ev}, bits)
				if !bits.Has(0) {
					continue
				}
			}
			n++
		}
		return d.Count.Holds(float64(n))
	}
	bits := rules.NewBits(1)
	_ = seg.Profile.Predicate.MatchProfiles(context.Background(), []rules.Profile{{User: user, Attrs: r.profiles[user]}}, bits)
	return bits.Has(0)
}

// Members returns seg's members when the clock reads now, sorted.
func (r *Evaluator) Members(seg *rules.Segment, now time.Time) []string {
	var out []string
	for _, u := range r.Users() {
		if r.Member(seg, u, now) {
			out = append(out, u)
		}
	}
	return out
}
