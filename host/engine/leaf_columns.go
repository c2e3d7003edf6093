package engine

import (
	"math"
	"slices"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/rules"
)

// bucketCol is the state of a did condition in one time bucket, as columns
// over the users with a matching event in it: who (a bitmap), how many
// (the count minus one, bit-sliced: bit i of it is in more[i], so a user
// with one event costs no more than its bit) and the number the aggregate
// keeps (a sum, a minimum or a maximum). Buckets are calendar days in the
// engine's zone, or for rolling hour windows the part of a UTC hour in one
// calendar day; every window starts and ends on a bucket boundary, so a
// window's value combines whole buckets, and a bucket a moving window has
// left is dropped whole.
type bucketCol struct {
	start, end int64 // [start, end) in Unix ms
	day        rules.CalendarDay
	users      *roaring.Bitmap
	more       []*roaring.Bitmap // count and avg
	vals       *numColumn        // sum and avg: the sum; min, max: the extreme
	distinct   *pairColumn       // distinct: the values
	// shared: a snapshot capture holds this bucket and encodes it later;
	// the writer changes a clone instead (see didLeaf.bucketFor).
	shared bool
}

func (c *bucketCol) clone() *bucketCol {
	n := &bucketCol{start: c.start, end: c.end, day: c.day, users: c.users.Clone()}
	for _, m := range c.more {
		n.more = append(n.more, m.Clone())
	}
	if c.vals != nil {
		n.vals = c.vals.clone()
	}
	if c.distinct != nil {
		n.distinct = c.distinct.clone()
	}
	return n
}

// increment adds one to the count of user u, who is in c.users already.
func (c *bucketCol) increment(u uint32) {
	for i := 0; ; i++ {
		if i == len(c.more) {
			c.more = append(c.more, roaring.New())
		}
		if c.more[i].CheckedAdd(u) {
			return
		}
		c.more[i].Remove(u) // the bit was set: carry
	}
}

// count is the number of user u's events in the bucket, where u is in
// c.users (the caller has looked).
func (c *bucketCol) count(u uint32) float64 {
	n := 1
	for i, m := range c.more {
		if m.Contains(u) {
			n += 1 << i
		}
	}
	return float64(n)
}

// span is the bucket of time t: [start, end) and its calendar day.
func (d *didLeaf) span(t int64) (int64, int64, rules.CalendarDay) {
	day := d.days.DayOf(t)
	s, e := day.Start(d.loc), (day + 1).Start(d.loc)
	if d.unit == rules.Hour {
		h := floorDiv(t, hourMs) * hourMs
		s, e = max(s, h), min(e, h+hourMs)
	}
	return s, e, day
}

// bucketFor returns the bucket of time t to change, creating it, and
// cloning it first if a capture holds it.
func (d *didLeaf) bucketFor(t int64) *bucketCol {
	i := d.hit
	if i >= len(d.cols) || d.cols[i].start > t || t >= d.cols[i].end {
		i = sort.Search(len(d.cols), func(i int) bool { return d.cols[i].end > t })
		if i == len(d.cols) || d.cols[i].start > t {
			s, e, day := d.span(t)
			c := &bucketCol{start: s, end: e, day: day, users: roaring.New()}
			switch d.cond.Aggregate.Func {
			case rules.AggCount, rules.AggDays:
			case rules.AggDistinct:
				c.distinct = &pairColumn{}
			default:
				c.vals = &numColumn{}
			}
			d.cols = slices.Insert(d.cols, i, c)
			if i == len(d.cols)-1 {
				d.settleBefore(i)
			}
		}
		d.hit = i
	}
	c := d.cols[i]
	if c.shared {
		c = c.clone()
		d.cols[i] = c
	}
	return c
}

// settleBefore settles the buckets before the i-th, the newest: their
// recent users move into the sorted columns. A bucket a capture holds is
// left as it is (it is cloned before a change).
func (d *didLeaf) settleBefore(i int) {
	for _, c := range d.cols[:i] {
		if c.shared {
			continue
		}
		if c.vals != nil && c.vals.recent != nil {
			c.vals.settle()
		}
		if c.distinct != nil && c.distinct.recent != nil {
			c.distinct.settle()
		}
	}
}

// addColumns records a matching event of user u at time t with number v
// (or interned value id, for distinct).
func (d *didLeaf) addColumns(u uint32, t int64, v float64, id uint32) {
	c := d.bucketFor(t)
	first := c.users.CheckedAdd(u)
	switch d.cond.Aggregate.Func {
	case rules.AggDistinct:
		c.distinct.add(u, id)
	case rules.AggCount:
		if !first {
			c.increment(u)
		}
	case rules.AggAvg:
		if !first {
			c.increment(u)
		}
		c.vals.add(u, v, rules.AggAvg, first)
	case rules.AggSum, rules.AggMin, rules.AggMax:
		c.vals.add(u, v, d.cond.Aggregate.Func, first)
	}
}

// inWindow returns the buckets inside [start, end). Buckets never straddle
// a window's edge.
func (d *didLeaf) inWindow(start, end int64) []*bucketCol {
	lo := sort.Search(len(d.cols), func(i int) bool { return d.cols[i].start >= start })
	hi := lo + sort.Search(len(d.cols)-lo, func(i int) bool { return d.cols[lo+i].start >= end })
	return d.cols[lo:hi]
}

// columnValue is didLeaf.value over the columns. Sums add bucket by
// bucket, each bucket's in the order its events arrived: exact for whole
// numbers (below 2^53), as amounts and counts mostly are.
func (d *didLeaf) columnValue(u uint32, start, end int64) (float64, bool) {
	var n, x float64
	found := false
	lastDay := rules.CalendarDay(math.MinInt32)
	if d.cond.Aggregate.Func == rules.AggDistinct {
		seen := d.seen[:0]
		for _, c := range d.inWindow(start, end) {
			if c.users.Contains(u) {
				seen = c.distinct.values(u, seen)
			}
		}
		d.seen = seen
		return float64(countDistinct(seen)), true
	}
	for _, c := range d.inWindow(start, end) {
		if !c.users.Contains(u) {
			continue
		}
		switch d.cond.Aggregate.Func {
		case rules.AggCount:
			n += c.count(u)
		case rules.AggDays:
			if c.day != lastDay {
				n++
				lastDay = c.day
			}
		case rules.AggSum:
			v, _ := c.vals.get(u)
			x += v
		case rules.AggAvg:
			n += c.count(u)
			v, _ := c.vals.get(u)
			x += v
		case rules.AggMin:
			if v, _ := c.vals.get(u); !found {
				x = v
			} else {
				x = math.Min(x, v)
			}
		case rules.AggMax:
			if v, _ := c.vals.get(u); !found {
				x = v
			} else {
				x = math.Max(x, v)
			}
		}
		found = true
	}
	switch d.cond.Aggregate.Func {
	case rules.AggCount, rules.AggDays:
		return n, true
	case rules.AggSum:
		return x, true
	case rules.AggAvg:
		if !found {
			return 0, false
		}
		return x / n, true
	}
	return x, found // min, max: undefined over no events
}

// slideColumns is timeBuckets.slide over the columns.
func (d *didLeaf) slideColumns(t0, t1 int64, touched *roaring.Bitmap) {
	s0, e0 := d.cond.Window.Interval(t0, d.loc)
	s1, e1 := d.cond.Window.Interval(t1, d.loc)
	for _, c := range d.cols {
		if (s0 < s1 && c.start < s1 && c.end > s0) || (e0 < e1 && c.start < e1 && c.end > e0) {
			touched.Or(c.users)
		}
	}
	if windowMoves(d.cond.Window) {
		k := 0
		for k < len(d.cols) && d.cols[k].end <= s1 {
			k++
		}
		if k > 0 {
			// A capture may hold the slice: move into a new one.
			d.cols = slices.Clone(d.cols[k:])
			d.hit = 0
		}
	}
}
