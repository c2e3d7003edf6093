package host

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segd/segd/rules"
)

// exprChunk is how many items a preview's expression predicate judges
// between two looks at the deadline. An expression cannot be stopped inside
// one item, but expr's memory budget bounds an item to a fraction of a
// second; 64 items also keep the answer bits aligned to words.
const exprChunk = 64

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
		chunk := exprChunk
		if plugins.isPlugin(st.Where) {
			chunk = 0
		}
		st.Where = &watchedEvents{w: w, next: st.Where, chunk: chunk}
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
			chunk := exprChunk
			if plugins.isPlugin(c.Predicate) {
				chunk = 0
			}
			c.Predicate = &watchedProfiles{w: w, next: c.Predicate, chunk: chunk}
			ws = append(ws, w)
		}
	})
	return ws
}

// watchedEvents is an event predicate under a watch.
type watchedEvents struct {
	w     *watch
	next  rules.EventPredicate
	chunk int // items between deadline checks; 0: the whole batch
}

// MatchEvents implements rules.EventPredicate.
func (p *watchedEvents) MatchEvents(ctx context.Context, events []rules.Event, out rules.Bits) error {
	t0 := time.Now()
	defer func() { p.w.ns.Add(int64(time.Since(t0))); p.w.items.Add(int64(len(events))) }()
	return inChunks(ctx, len(events), p.chunk, func(i, j int) error {
		return p.next.MatchEvents(ctx, events[i:j], out[i/64:])
	})
}

// EvalErrors implements rules.EvalStats, for segment.list's figures.
func (p *watchedEvents) EvalErrors() (uint64, string) { return evalErrors(p.next) }

// watchedProfiles is a profile predicate under a watch.
type watchedProfiles struct {
	w     *watch
	next  rules.ProfilePredicate
	chunk int
}

// MatchProfiles implements rules.ProfilePredicate.
func (p *watchedProfiles) MatchProfiles(ctx context.Context, profiles []rules.Profile, out rules.Bits) error {
	t0 := time.Now()
	defer func() { p.w.ns.Add(int64(time.Since(t0))); p.w.items.Add(int64(len(profiles))) }()
	return inChunks(ctx, len(profiles), p.chunk, func(i, j int) error {
		return p.next.MatchProfiles(ctx, profiles[i:j], out[i/64:])
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

// inChunks calls match over [0, n) in chunks of size (a multiple of 64, or
// 0 for one call), and stops between chunks once ctx is done.
func inChunks(ctx context.Context, n, size int, match func(i, j int) error) error {
	if size == 0 {
		size = n
	}
	for i := 0; i < n; i += size {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := match(i, min(i+size, n)); err != nil {
			return err
		}
	}
	return nil
}

// tooSlow describes a preview stopped by its time limit: how far the replay
// got and how fast, and whether a predicate or the log's length took the
// time.
func (p *previewSet) tooSlow(limit, took time.Duration, messages, last, to, events uint64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "the preview stopped at its time limit of %v, having replayed %d messages (to stream sequence %d of %d; %d events, %.0f events/s)",
		limit, messages, last, to, events, float64(events)/max(took.Seconds(), 1e-3))
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
	return fmt.Errorf("%s", b.String())
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
