package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segd/segd/rules"
)

// chunkWork is how long an expression predicate of a preview runs between
// two looks at the deadline: an expression cannot be stopped inside an item
// (expr's memory budget bounds one to a fraction of a second), so batches
// are judged in chunks sized to take about this long.
const chunkWork = 10 * time.Millisecond

// watch accounts for the time one predicate of a preview takes, so that a
// preview that runs out of time can say whether a predicate or the length
// of the log was the problem.
type watch struct {
	what  string // e.g. `segment p: where "props.x > 1"`
	ns    atomic.Int64
	items atomic.Int64
}

func (w *watch) took() time.Duration { return time.Duration(w.ns.Load()) }

// watchPredicates replaces every predicate of seg's condition with one that
// times it and, for expressions, checks the deadline between chunks of a
// batch (a plugin checks it itself, inside the guest). The segment was
// compiled for this preview alone, so rewriting it touches nothing else.
func watchPredicates(seg *rules.Segment, plugins *trackedPlugins) []*watch {
	var ws []*watch
	watchStep := func(st *rules.Step, field string) {
		if st == nil || st.Where == nil {
			return
		}
		w := &watch{what: fmt.Sprintf("segment %s: %s %q", seg.ID, field, st.WhereSource)}
		st.Where = &watchedEvents{w: w, next: st.Where, whole: plugins.isPlugin(st.Where)}
		ws = append(ws, w)
	}
	rules.Walk(seg.Condition, func(c rules.Condition) {
		switch c := c.(type) {
		case *rules.Did:
			watchStep(&c.Step, "where")
		case *rules.Sequence:
			for i := range c.Steps {
				watchStep(&c.Steps[i], fmt.Sprintf("step %d where", i+1))
			}
			watchStep(c.ThenNot, "then_not where")
		case *rules.ProfileCondition:
			if c.Predicate == nil {
				return
			}
			w := &watch{what: fmt.Sprintf("segment %s: profile %q", seg.ID, c.Source)}
			c.Predicate = &watchedProfiles{w: w, next: c.Predicate, whole: plugins.isPlugin(c.Predicate)}
			ws = append(ws, w)
		}
	})
	return ws
}

// watchedEvents is an event predicate under a watch.
type watchedEvents struct {
	w    *watch
	next rules.EventPredicate
	// whole: judge a batch in one call (a plugin, which checks the
	// deadline inside the guest).
	whole bool
}

// MatchEvents implements rules.EventPredicate.
func (p *watchedEvents) MatchEvents(ctx context.Context, events []rules.Event, out rules.Bits) error {
	return p.w.run(ctx, len(events), p.whole, out, func(i, j int, out rules.Bits) error {
		return p.next.MatchEvents(ctx, events[i:j], out)
	})
}

// EvalErrors implements rules.EvalStats, for segment.list's figures.
func (p *watchedEvents) EvalErrors() (uint64, string) { return evalErrors(p.next) }

// watchedProfiles is a profile predicate under a watch.
type watchedProfiles struct {
	w     *watch
	next  rules.ProfilePredicate
	whole bool
}

// MatchProfiles implements rules.ProfilePredicate.
func (p *watchedProfiles) MatchProfiles(ctx context.Context, profiles []rules.Profile, out rules.Bits) error {
	return p.w.run(ctx, len(profiles), p.whole, out, func(i, j int, out rules.Bits) error {
		return p.next.MatchProfiles(ctx, profiles[i:j], out)
	})
}

// EvalErrors implements rules.EvalStats.
func (p *watchedProfiles) EvalErrors() (uint64, string) { return evalErrors(p.next) }

func evalErrors(pred any) (uint64, string) {
	if st, ok := pred.(rules.EvalStats); ok {
		return st.EvalErrors()
	}
	return 0, ""
}

// run judges items [0, n) with match, into out, and accounts for the time
// and the items judged. Unless whole, it goes in chunks of about chunkWork
// and stops between them once ctx is done. match writes the answer for
// items [i, j) at bit 0 of the bits it is given.
func (w *watch) run(ctx context.Context, n int, whole bool, out rules.Bits, match func(i, j int, out rules.Bits) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if whole {
		t0 := time.Now()
		err := match(0, n, out)
		w.ns.Add(int64(time.Since(t0)))
		w.items.Add(int64(n))
		return err
	}
	var scratch rules.Bits
	size := 16
	for i := 0; i < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		j := min(i+size, n)
		if words := (j - i + 63) / 64; cap(scratch) >= words {
			scratch = scratch[:words]
			scratch.Clear()
		} else {
			scratch = rules.NewBits(j - i)
		}
		t0 := time.Now()
		err := match(i, j, scratch)
		el := time.Since(t0)
		w.ns.Add(int64(el))
		w.items.Add(int64(j - i))
		if err != nil {
			return err
		}
		for k := range j - i {
			if scratch.Has(k) {
				out.Set(i + k)
			}
		}
		i = j
		switch {
		case el < chunkWork/2 && size < 4096:
			size *= 2
		case el > chunkWork && size > 1:
			size /= 2
		}
	}
	return nil
}

// replayProgress is how far a preview's replay got.
type replayProgress struct {
	messages uint64 // messages applied
	events   uint64 // events they held
	at       uint64 // the sequence of the message being applied, if any
	to       uint64 // the sequence the replay goes to
}

// tooSlow describes a preview stopped by its time limit: how far the replay
// got and how fast, and whether a predicate or the log's length took the
// time.
func (p *previewSet) tooSlow(limit, took time.Duration, r replayProgress) error {
	var b strings.Builder
	fmt.Fprintf(&b, "the preview stopped at its time limit of %v", limit)
	if r.at != 0 {
		fmt.Fprintf(&b, " in the message at stream sequence %d of %d", r.at, r.to)
	} else {
		fmt.Fprintf(&b, " before the end of the log (stream sequence %d)", r.to)
	}
	fmt.Fprintf(&b, ", having replayed %d messages before it (%d events, %.0f events/s)",
		r.messages, r.events, float64(r.events)/max(took.Seconds(), 1e-3))
	var total time.Duration
	var slowest *watch
	for _, w := range p.watches {
		total += w.took()
		if slowest == nil || w.took() > slowest.took() {
			slowest = w
		}
	}
	if slowest != nil && slowest.took() > took/2 {
		perItem := slowest.took() / time.Duration(max(slowest.items.Load(), 1))
		fmt.Fprintf(&b, "; %v of it went to %s (%d items judged, %v each): the predicate is too expensive to preview over the whole log",
			slowest.took().Round(time.Millisecond), slowest.what, slowest.items.Load(), perItem.Round(time.Microsecond))
	} else {
		fmt.Fprintf(&b, "; the predicates took %v of it: the event log is too long to replay within the limit", total.Round(time.Millisecond))
	}
	return errors.New(b.String())
}

// trackedPlugins hands out the registry's plugin predicates and remembers
// them, so that a preview releases what it compiled: each holds a warm
// instance pool for its parameters, which would otherwise live on.
type trackedPlugins struct {
	next rules.Plugins
	made map[any]bool
}

// EventPredicate implements rules.Plugins.
func (t *trackedPlugins) EventPredicate(ref rules.PluginRef) (rules.EventPredicate, error) {
	pr, err := t.next.EventPredicate(ref)
	if err == nil {
		t.add(pr)
	}
	return pr, err
}

// ProfilePredicate implements rules.Plugins.
func (t *trackedPlugins) ProfilePredicate(ref rules.PluginRef) (rules.ProfilePredicate, error) {
	pr, err := t.next.ProfilePredicate(ref)
	if err == nil {
		t.add(pr)
	}
	return pr, err
}

func (t *trackedPlugins) add(pr any) {
	if t.made == nil {
		t.made = map[any]bool{}
	}
	t.made[pr] = true
}

// isPlugin reports whether pred is one of the plugin predicates handed out.
func (t *trackedPlugins) isPlugin(pred any) bool {
	if pred == nil || !reflect.TypeOf(pred).Comparable() {
		return false // not a map key: not one of ours, which are pointers
	}
	return t.made[pred]
}

// release closes the predicates; the preview's engine has stopped.
func (t *trackedPlugins) release() {
	for pr := range t.made {
		if c, ok := pr.(io.Closer); ok {
			_ = c.Close()
		}
	}
	t.made = nil
}
