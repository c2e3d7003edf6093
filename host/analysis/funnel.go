package analysis

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
)

// FunnelMode selects ClickHouse windowFunnel's strict modes; the zero value
// is its default mode. Modes combine.
type FunnelMode uint8

// The strict modes.
const (
	// StrictOrder stops a user's funnel at the first event that is not the
	// next step (any of the user's events that matches no step, or a step
	// out of turn).
	StrictOrder FunnelMode = 1 << iota
	// StrictDeduplication stops a user's funnel when a step already
	// reached happens again (step 1 excepted: it restarts the chain).
	StrictDeduplication
	// StrictIncrease requires each step to happen strictly after the step
	// before (not at the same millisecond).
	StrictIncrease
)

// ParseFunnelMode parses "default" or a comma-separated list of
// strict_order, strict_deduplication and strict_increase.
func ParseFunnelMode(s string) (FunnelMode, error) {
	modes, err := api.ParseFunnelMode(s)
	var m FunnelMode
	for _, p := range modes {
		switch p {
		case api.FunnelStrictOrder:
			m |= StrictOrder
		case api.FunnelStrictDeduplication:
			m |= StrictDeduplication
		case api.FunnelStrictIncrease:
			m |= StrictIncrease
		}
	}
	return m, err
}

// String writes the mode as ParseFunnelMode reads it.
func (m FunnelMode) String() string {
	if m == 0 {
		return api.FunnelDefault
	}
	var parts []string
	for _, x := range []struct {
		m FunnelMode
		s string
	}{{StrictOrder, api.FunnelStrictOrder}, {StrictDeduplication, api.FunnelStrictDeduplication}, {StrictIncrease, api.FunnelStrictIncrease}} {
		if m&x.m != 0 {
			parts = append(parts, x.s)
		}
	}
	return strings.Join(parts, ",")
}

// Step is one step of a funnel. Today a step is an event name; a named
// predicate of the rule files will be the other kind, matched per event
// the same way.
type Step struct {
	Event string
}

// FunnelQuery asks for a funnel.
type FunnelQuery struct {
	Steps []Step
	// Window is measured from each chain's step 1, inclusive.
	Window time.Duration
	// From and To bound the days of step 1.
	From, To Day
	Mode     FunnelMode
	Segments []Segment
}

// Funnel answers q with ClickHouse windowFunnel's semantics. For each user:
// their events from the start of From to the end of To plus Window, each
// event once per step it matches (step 1 only up to the end of To), sorted
// by time and, at the same millisecond, by step; each step-1 event starts a
// chain again; step k extends a chain that reached k-1 if it happens no
// later than the chain's start plus Window (inclusive). The user's level is
// the deepest step any chain reached. Users[k] counts the users whose level
// is at least k+1.
//
// Only users with a step-1 event in the range (an OR of presence bitmaps)
// are decoded; their levels are computed once, on every core, and each
// segment is then an AND cardinality per step.
func (ix *Index) Funnel(q FunnelQuery) []api.FunnelSegment {
	r, _ := ix.FunnelContext(context.Background(), q)
	return r
}

// FunnelContext is Funnel that stops when ctx is done, with ctx's error.
func (ix *Index) FunnelContext(ctx context.Context, q FunnelQuery) ([]api.FunnelSegment, error) {
	ix.read()
	defer ix.mu.RUnlock()
	n := len(q.Steps)
	counts := make([][]uint64, len(q.Segments))
	for i := range counts {
		counts[i] = make([]uint64, n)
	}
	reached, err := ix.funnelLevels(ctx, q)
	if err != nil {
		return nil, err
	}
	for si, s := range q.Segments {
		for k, r := range reached {
			if s.Users == nil {
				counts[si][k] = r.GetCardinality()
			} else {
				counts[si][k] = r.AndCardinality(s.Users)
			}
		}
	}
	out := make([]api.FunnelSegment, len(q.Segments))
	for si, s := range q.Segments {
		steps := make([]api.FunnelStepCount, n)
		for k, u := range counts[si] {
			steps[k].Users = u
			if first := counts[si][0]; first > 0 {
				steps[k].Conversion = float64(u) / float64(first)
			}
			if k == 0 && u > 0 {
				steps[k].StepConversion = 1
			} else if k > 0 && counts[si][k-1] > 0 {
				steps[k].StepConversion = float64(u) / float64(counts[si][k-1])
			}
		}
		out[si] = api.FunnelSegment{Segment: s.ID, Steps: steps}
	}
	return out, nil
}

// funnelLevels returns, for k = 0..len(steps)-1, the users who reached
// step k+1. The caller holds the read lock.
func (ix *Index) funnelLevels(ctx context.Context, q FunnelQuery) ([]*roaring.Bitmap, error) {
	n := len(q.Steps)
	reached := make([]*roaring.Bitmap, n)
	for k := range reached {
		reached[k] = roaring.New()
	}
	first, ok := ix.eventID(q.Steps[0].Event)
	if !ok {
		return reached, nil
	}
	var starts []*roaring.Bitmap
	for d := q.From; d <= q.To; d++ {
		if c := ix.cell(first, d); c != nil {
			starts = append(starts, c.users)
		}
	}
	candidates := roaring.ParOr(0, starts...).ToArray()
	if len(candidates) == 0 {
		return reached, nil
	}
	// stepsOf[ev] lists the (1-based) steps an event id matches.
	stepsOf := map[uint32][]uint8{}
	for k, s := range q.Steps {
		if ev, ok := ix.eventID(s.Event); ok {
			stepsOf[ev] = append(stepsOf[ev], uint8(k+1))
		}
	}
	f := funnelRun{
		ix: ix, stepsOf: stepsOf, n: n, window: q.Window.Milliseconds(), mode: q.Mode,
		lo: q.From.Start(ix.loc), endTo: (q.To + 1).Start(ix.loc) - 1,
	}
	levels := make([]uint8, len(candidates))
	workers := min(runtime.GOMAXPROCS(0), (len(candidates)+4095)/4096)
	var wg sync.WaitGroup
	chunk := (len(candidates) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(candidates))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st funnelState
			for i := lo; i < hi; i++ {
				if i%1024 == 0 && ctx.Err() != nil {
					return
				}
				levels[i] = f.level(candidates[i], &st)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// candidates are sorted, so each step's users are appended in order.
	lists := make([][]uint32, n)
	for i, u := range candidates {
		for k := range int(levels[i]) {
			lists[k] = append(lists[k], u)
		}
	}
	for k := range lists {
		reached[k].AddMany(lists[k])
		reached[k].RunOptimize()
	}
	return reached, nil
}

// funnelRun is one funnel query's parameters, shared by its workers.
type funnelRun struct {
	ix        *Index
	stepsOf   map[uint32][]uint8
	n         int
	window    int64
	mode      FunnelMode
	lo, endTo int64
}

// funnelState is a worker's reusable buffers.
type funnelState struct {
	buf, scratch []entry
	marks        []mark
	chainStart   []int64
	chainLast    []int64
	has          []bool
}

// mark is one (time, step) pair; step 0 is an event matching no step (only
// kept in strict order).
type mark struct {
	t    int64
	step uint8
}

// level computes a user's funnel level.
func (f *funnelRun) level(u uint32, st *funnelState) uint8 {
	st.buf, st.scratch = f.ix.entries(u, st.buf[:0], st.scratch, f.lo, f.endTo+f.window)
	marks := st.marks[:0]
	sorted := true
	for _, e := range st.buf {
		steps, ok := f.stepsOf[e.ev]
		if !ok {
			if f.mode&StrictOrder != 0 {
				marks, sorted = appendMark(marks, sorted, mark{e.t, 0})
			}
			continue
		}
		for _, s := range steps {
			if s == 1 && e.t > f.endTo {
				if f.mode&StrictOrder != 0 && len(steps) == 1 {
					marks, sorted = appendMark(marks, sorted, mark{e.t, 0})
				}
				continue
			}
			marks, sorted = appendMark(marks, sorted, mark{e.t, s})
		}
	}
	if !sorted {
		slices.SortStableFunc(marks, func(a, b mark) int {
			if a.t != b.t {
				if a.t < b.t {
					return -1
				}
				return 1
			}
			return int(a.step) - int(b.step)
		})
	}
	st.marks = marks
	return windowFunnel(marks, f.n, f.window, f.mode, st)
}

func appendMark(marks []mark, sorted bool, m mark) ([]mark, bool) {
	if sorted && len(marks) > 0 {
		p := marks[len(marks)-1]
		sorted = p.t < m.t || (p.t == m.t && p.step <= m.step)
	}
	return append(marks, m), sorted
}

// windowFunnel is the level of one user's sorted marks.
func windowFunnel(marks []mark, n int, window int64, mode FunnelMode, st *funnelState) uint8 {
	if len(marks) == 0 {
		return 0
	}
	if n == 1 && mode&StrictOrder == 0 {
		return 1
	}
	if cap(st.has) < n {
		st.has, st.chainStart, st.chainLast = make([]bool, n), make([]int64, n), make([]int64, n)
	}
	has, start, last := st.has[:n], st.chainStart[:n], st.chainLast[:n]
	clear(has)
	deepest := func() uint8 {
		for k := n; k > 0; k-- {
			if has[k-1] {
				return uint8(k)
			}
		}
		return 0
	}
	begun := false
	for _, m := range marks {
		k := int(m.step) - 1
		switch {
		case k == -1: // strict order: an event that is no step
			if begun {
				return deepest()
			}
		case k == 0:
			has[0], start[0], last[0] = true, m.t, m.t
			begun = true
		case mode&StrictDeduplication != 0 && has[k]:
			return deepest()
		case mode&StrictOrder != 0 && begun && !has[k-1]:
			for j := range n {
				if !has[j] {
					return uint8(j)
				}
			}
		case has[k-1]:
			ok := m.t <= start[k-1]+window
			if mode&StrictIncrease != 0 {
				ok = ok && last[k-1] < m.t
			}
			if ok {
				has[k], start[k], last[k] = true, start[k-1], m.t
				if k+1 == n {
					return uint8(n)
				}
			}
		}
	}
	return deepest()
}
