package engine

import (
	"math"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/rules"
)

// batchLeaf is a leaf that judges many users in one pass over its state,
// cheaper than asking holds user by user.
type batchLeaf interface {
	// holdsAll sets out[i] to holds(us[i], now) where mask[i] is set (or
	// everywhere, for a nil mask), and may set it elsewhere too; us is
	// ascending and is the content of set.
	holdsAll(us []uint32, set *roaring.Bitmap, now int64, mask, out []bool)
}

// holdsMany is node.holds for the ascending users us (the content of
// set), into out. Batch leaves judge all of us; the others only the users
// whose value can still change the result (as holds short-circuits).
func (n *node) holdsMany(us []uint32, set *roaring.Bitmap, now int64, changes changeSet, out []bool) {
	n.holdsMasked(us, set, now, changes, nil, out)
}

// holdsMasked is holdsMany where only the positions with mask[i] set (all
// for a nil mask) are needed; the others may be left as they are.
func (n *node) holdsMasked(us []uint32, set *roaring.Bitmap, now int64, changes changeSet, mask, out []bool) {
	switch n.op {
	case opAll, opAny:
		all := n.op == opAll
		for i := range out {
			out[i] = all
		}
		kid := make([]bool, len(us))
		need := make([]bool, len(us))
		for _, k := range n.kids {
			// Still undecided: all of true so far, any of false so far.
			pending := false
			for i := range need {
				need[i] = (mask == nil || mask[i]) && out[i] == all
				pending = pending || need[i]
			}
			if !pending {
				return
			}
			k.holdsMasked(us, set, now, changes, need, kid)
			for i, v := range kid {
				if need[i] && v != all {
					out[i] = v
				}
			}
		}
	case opNot:
		n.kids[0].holdsMasked(us, set, now, changes, mask, out)
		for i := range out {
			out[i] = !out[i]
		}
	case opRef:
		for i, u := range us {
			if mask == nil || mask[i] {
				out[i] = changes.member(n.ref, u)
			}
		}
	default:
		if bl, ok := n.leaf.(batchLeaf); ok {
			bl.holdsAll(us, set, now, mask, out)
			return
		}
		for i, u := range us {
			if mask == nil || mask[i] {
				out[i] = n.leaf.holds(u, now)
			}
		}
	}
}

// holdsAll judges the users in one pass per bucket of the window: the
// bucket's users (and count slices) intersected with set are walked beside
// us, instead of a bitmap lookup per user and bucket. Distinct goes user
// by user (a union of values per user).
func (d *didLeaf) holdsAll(us []uint32, set *roaring.Bitmap, now int64, mask, out []bool) {
	// A few users (a batch touches a few per rule) cost less one lookup
	// per bucket each than intersecting every bucket with them.
	if d.cond.Aggregate.Func == rules.AggDistinct {
		for i, u := range us {
			if mask == nil || mask[i] {
				out[i] = d.holds(u, now)
			}
		}
		return
	}
	if d.adds.bounds(now) {
		d.holdsRest(us, now, mask, out)
		return
	}
	d.holdsUndecided(us, set, now, mask, out)
}

// holdsUndecided is holdsAll without the batch's bounds: a pass over the
// buckets for us.
func (d *didLeaf) holdsUndecided(us []uint32, set *roaring.Bitmap, now int64, mask, out []bool) {
	if len(us) < batchMin {
		d.holdsFew(us, now, mask, out)
		return
	}
	d.holdsColumns(us, set, now, out)
}

// stepAdds are the users (sorted, a user once per event) whose events a
// did leaf's last ingest added at the clock reading now; valid for a
// count leaf whose events all lay inside its window. Each such event
// counts for its user as long as the clock reads now
// (only a clock move drops events: advance invalidates), so their number
// is a lower bound of the user's count: enough to decide ">= 1" for every
// user a batch touched, and "< 2" for one with two new events, without a
// pass over the buckets (BenchmarkApply: the 100-rule set is all counts,
// 40 of them ">= 1").
type stepAdds struct {
	now   int64
	valid bool
	users []uint32
	// scratch of holdsRest (writer only)
	pos  []int
	rest []uint32
	out  []bool
}

func (a *stepAdds) reset(now int64) {
	a.now, a.valid, a.users = now, true, a.users[:0]
}

// bounds reports whether the adds are a lower bound at now.
func (a *stepAdds) bounds(now int64) bool {
	return a.valid && a.now == now && len(a.users) > 0
}

// decides returns the comparison's value for every count of at least
// least, if there is one.
func decides(c rules.Comparison, least float64) (value, ok bool) {
	switch c.Op {
	case rules.OpGE, rules.OpGT:
		return true, c.Holds(least)
	case rules.OpLE, rules.OpLT:
		return false, !c.Holds(least)
	case rules.OpEQ:
		return false, least > c.Value
	case rules.OpNE:
		return true, least > c.Value
	case rules.OpBetween:
		return false, least > c.High
	}
	return false, false
}

// holdsRest is holdsAll for a count leaf whose adds bound the count at
// now: the users the bound decides are set from it, and only the others
// are judged from the buckets.
func (d *didLeaf) holdsRest(us []uint32, now int64, mask, out []bool) {
	a := &d.adds
	a.pos, a.rest = a.pos[:0], a.rest[:0]
	k := 0 // into a.users, both ascending
	for i, u := range us {
		if mask != nil && !mask[i] {
			continue
		}
		for k < len(a.users) && a.users[k] < u {
			k++
		}
		n := 0
		for k < len(a.users) && a.users[k] == u {
			n++
			k++
		}
		if n > 0 {
			if v, ok := decides(d.cond.Compare, float64(n)); ok {
				out[i] = v
				continue
			}
		}
		a.pos = append(a.pos, i)
		a.rest = append(a.rest, u)
	}
	if len(a.rest) == 0 {
		return
	}
	a.out = slices.Grow(a.out[:0], len(a.rest))[:len(a.rest)]
	var set *roaring.Bitmap
	if len(a.rest) >= batchMin {
		set = roaring.BitmapOf(a.rest...)
	}
	d.holdsUndecided(a.rest, set, now, nil, a.out)
	for j, i := range a.pos {
		out[i] = a.out[j]
	}
}

// holdsFew is holdsAll for a few users (not for distinct): columnValue for
// each, but a bucket's users are walked once beside us, galloping from one
// user to the next, instead of a binary search of the bucket per user
// (the bulk of a step's judging in BenchmarkIngest100Rules). Each user's
// numbers add up bucket by bucket in the same order as columnValue's.
func (d *didLeaf) holdsFew(us []uint32, now int64, mask, out []bool) {
	start, end := d.window.at(now)
	a := d.cond.Aggregate.Func
	f := &d.few
	f.n = resetFloats(f.n, len(us))
	f.x = resetFloats(f.x, len(us))
	f.found = slices.Grow(f.found[:0], len(us))[:len(us)]
	clear(f.found)
	f.lastDay = slices.Grow(f.lastDay[:0], len(us))[:len(us)]
	for i := range f.lastDay {
		f.lastDay[i] = math.MinInt32
	}
	n, x, found, lastDay := f.n, f.x, f.found, f.lastDay
	var it roaring.IntIterator
	counts := a == rules.AggCount || a == rules.AggAvg
	for _, c := range d.inWindow(start, end) {
		it.Initialize(c.users)
		from := 0 // the users come in ascending order
		if counts {
			// The count's bit planes are subsets of the users: walked the
			// same way.
			f.planes = slices.Grow(f.planes[:0], len(c.more))[:len(c.more)]
			for k, m := range c.more {
				f.planes[k].Initialize(m)
			}
		}
		for i, u := range us {
			if mask != nil && !mask[i] {
				continue
			}
			it.AdvanceIfNeeded(u)
			if !it.HasNext() {
				break
			}
			if it.PeekNext() != u {
				continue
			}
			switch a {
			case rules.AggCount:
				n[i] += f.count(u)
			case rules.AggDays:
				if c.day != lastDay[i] {
					n[i]++
					lastDay[i] = c.day
				}
			case rules.AggSum:
				v, _ := c.vals.getFrom(u, &from)
				x[i] += v
			case rules.AggAvg:
				n[i] += f.count(u)
				v, _ := c.vals.getFrom(u, &from)
				x[i] += v
			case rules.AggMin:
				if v, _ := c.vals.getFrom(u, &from); !found[i] {
					x[i] = v
				} else {
					x[i] = math.Min(x[i], v)
				}
			case rules.AggMax:
				if v, _ := c.vals.getFrom(u, &from); !found[i] {
					x[i] = v
				} else {
					x[i] = math.Max(x[i], v)
				}
			}
			found[i] = true
		}
	}
	d.judge(n, x, found, mask, out)
}

// fewScratch is holdsFew's per-user accumulators, kept between steps
// (writer only).
type fewScratch struct {
	n, x    []float64
	found   []bool
	lastDay []rules.CalendarDay
	planes  []roaring.IntIterator // over a bucket's count planes (more)
}

// count is bucketCol.count for user u of the bucket whose planes are
// being walked, u not below the last user asked.
func (f *fewScratch) count(u uint32) float64 {
	n := 1
	for k := range f.planes {
		p := &f.planes[k]
		p.AdvanceIfNeeded(u)
		if p.HasNext() && p.PeekNext() == u {
			n += 1 << k
		}
	}
	return float64(n)
}

func resetFloats(s []float64, n int) []float64 {
	s = slices.Grow(s[:0], n)[:n]
	clear(s)
	return s
}

// holdsColumns is holdsAll by intersecting buckets with set (not for
// distinct).
func (d *didLeaf) holdsColumns(us []uint32, set *roaring.Bitmap, now int64, out []bool) {
	start, end := d.window.at(now)
	a := d.cond.Aggregate.Func
	n := make([]float64, len(us)) // count or days
	var x []float64               // sum, min, max
	var found []bool
	if a != rules.AggCount && a != rules.AggDays {
		x = make([]float64, len(us))
		found = make([]bool, len(us))
	}
	var lastDay []rules.CalendarDay
	if a == rules.AggDays {
		lastDay = make([]rules.CalendarDay, len(us))
		for i := range lastDay {
			lastDay[i] = math.MinInt32
		}
	}
	for _, c := range d.inWindow(start, end) {
		in := roaring.And(c.users, set)
		if in.IsEmpty() {
			continue
		}
		from := 0 // the users come in ascending order
		walk(us, in, func(i int, u uint32) {
			switch a {
			case rules.AggCount, rules.AggAvg:
				n[i]++
			case rules.AggDays:
				if c.day != lastDay[i] {
					n[i]++
					lastDay[i] = c.day
				}
			}
			if found == nil {
				return
			}
			v, _ := c.vals.getFrom(u, &from)
			switch a {
			case rules.AggSum, rules.AggAvg:
				x[i] += v
			case rules.AggMin:
				if !found[i] {
					x[i] = v
				} else {
					x[i] = math.Min(x[i], v)
				}
			case rules.AggMax:
				if !found[i] {
					x[i] = v
				} else {
					x[i] = math.Max(x[i], v)
				}
			}
			found[i] = true
		})
		if a == rules.AggCount || a == rules.AggAvg {
			for k, m := range c.more {
				if more := roaring.And(m, in); !more.IsEmpty() {
					walk(us, more, func(i int, _ uint32) { n[i] += float64(int(1) << k) })
				}
			}
		}
	}
	d.judge(n, x, found, nil, out)
}

// judge sets out[i], for each user i the mask leaves (nil: every one),
// to whether the leaf's comparison holds of that user's aggregate: n the
// count or days, x the sum, min or max, found whether any event counted
// (nil for count and days, which never read it).
func (d *didLeaf) judge(n, x []float64, found, mask, out []bool) {
	cmp := d.cond.Compare
	for i := range n {
		if mask != nil && !mask[i] {
			continue
		}
		switch d.cond.Aggregate.Func {
		case rules.AggCount, rules.AggDays:
			out[i] = cmp.Holds(n[i])
		case rules.AggSum:
			out[i] = cmp.Holds(x[i])
		case rules.AggAvg:
			out[i] = found[i] && cmp.Holds(x[i]/n[i])
		default: // min, max: undefined over no events
			out[i] = found[i] && cmp.Holds(x[i])
		}
	}
}

// batchMin is the fewest users didLeaf.holdsAll judges by intersecting
// buckets (BenchmarkIngest100Rules: ~50 users per rule and batch).
const batchMin = 256

// walk calls f with the position in us (ascending) of each user of sub,
// which is a subset of us.
func walk(us []uint32, sub *roaring.Bitmap, f func(i int, u uint32)) {
	i := 0
	it := sub.Iterator()
	for it.HasNext() {
		u := it.Next()
		for us[i] != u {
			i++
		}
		f(i, u)
	}
}
