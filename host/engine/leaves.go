package engine

import (
	"container/heap"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/rules"
)

// leaf is the running state of one leaf condition of a rule. The engine
// asks each leaf which users a batch or a clock move may have changed, and
// then asks for the value of the condition for just those users.
type leaf interface {
	// ingest reads the batch and adds to touched the users whose value may
	// have changed.
	ingest(ctx context.Context, b *batchView, touched *roaring.Bitmap) error
	// advance moves the clock from t0 to t1 (Unix ms) and adds to touched
	// the users whose value may change with it.
	advance(t0, t1 int64, touched *roaring.Bitmap)
	// holds reports the condition's value for user u when the clock reads
	// now (Unix ms); now never goes back between calls.
	holds(u uint32, now int64) bool
	// empty reports the value for a user the leaf keeps nothing for: what
	// a new user is, until an event of theirs reaches the leaf.
	empty() bool
}

// batchView is a batch as leaves see it: accepted events with their dense
// user ids, indexed by name, and the users whose profiles changed.
type batchView struct {
	events   []rules.Event
	users    []uint32
	byName   map[string][]int
	profiled *roaring.Bitmap
	profiles profileSource
	names    []string // by dense id
	now      int64
}

// timeBuckets indexes users by the time bucket (calendar day or UTC hour)
// of their stored events, so that a window edge passing a bucket names the
// users to judge again.
type timeBuckets struct {
	unit    rules.Unit
	days    rules.DayCache
	buckets map[int64]*roaring.Bitmap
	// last is the bucket added to last: a batch's events mostly share one.
	lastKey int64
	last    *roaring.Bitmap
	// shared lists the buckets a snapshot capture holds (see freeze):
	// each is cloned before its first change. Nil without a capture.
	shared map[int64]bool
}

func newTimeBuckets(unit rules.Unit, loc *time.Location) timeBuckets {
	return timeBuckets{unit: unit, days: rules.DayCache{Loc: loc}, buckets: map[int64]*roaring.Bitmap{}}
}

func (tb *timeBuckets) bucketOf(t int64) int64 {
	if tb.unit == rules.Hour {
		return floorDiv(t, hourMs)
	}
	return int64(tb.days.DayOf(t))
}

// span returns the bucket's [start, end) in Unix ms.
func (tb *timeBuckets) span(b int64) (int64, int64) {
	if tb.unit == rules.Hour {
		return b * hourMs, (b + 1) * hourMs
	}
	return dayIndex(b).Start(tb.days.Loc), dayIndex(b + 1).Start(tb.days.Loc)
}

func (tb *timeBuckets) add(t int64, u uint32) {
	b := tb.bucketOf(t)
	if tb.last == nil || b != tb.lastKey {
		bm := tb.buckets[b]
		if bm == nil {
			bm = roaring.New()
			tb.buckets[b] = bm
		} else if tb.shared[b] {
			bm = bm.Clone()
			tb.buckets[b] = bm
			delete(tb.shared, b)
		}
		tb.lastKey, tb.last = b, bm
	}
	tb.last.Add(u)
}

// freeze returns the buckets for a snapshot capture to encode later, and
// has the writer clone a bucket before changing it until release.
func (tb *timeBuckets) freeze() map[int64]*roaring.Bitmap {
	tb.shared = make(map[int64]bool, len(tb.buckets))
	for b := range tb.buckets {
		tb.shared[b] = true
	}
	tb.last = nil
	return maps.Clone(tb.buckets)
}

func (tb *timeBuckets) release() { tb.shared = nil }

// slide moves window w from the clock t0 to t1: the users of buckets that
// its start or end crossed are added to touched, and buckets a moving
// window has left are forgotten.
func (tb *timeBuckets) slide(w rules.Window, loc *time.Location, t0, t1 int64, touched *roaring.Bitmap) {
	s0, e0 := w.Interval(t0, loc)
	s1, e1 := w.Interval(t1, loc)
	tb.crossed(s0, s1, touched)
	tb.crossed(e0, e1, touched)
	if windowMoves(w) {
		tb.dropBefore(s1)
	}
}

// crossed adds the users of buckets that overlap [from, to) to touched.
func (tb *timeBuckets) crossed(from, to int64, touched *roaring.Bitmap) {
	if from >= to {
		return
	}
	for b, bm := range tb.buckets {
		if s, e := tb.span(b); s < to && e > from {
			touched.Or(bm)
		}
	}
}

// dropBefore forgets buckets that end at or before t.
func (tb *timeBuckets) dropBefore(t int64) {
	for b := range tb.buckets {
		if _, e := tb.span(b); e <= t {
			delete(tb.buckets, b)
			delete(tb.shared, b)
		}
	}
	tb.last = nil
}

const hourMs = int64(time.Hour / time.Millisecond)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// interval caches a window's [start, end) for the last clock reading asked:
// within a step every user is judged at the same time, and computing
// calendar days is the costly part.
type interval struct {
	w          rules.Window
	loc        *time.Location
	now        int64
	start, end int64
	valid      bool
}

func (iv *interval) at(now int64) (int64, int64) {
	if !iv.valid || iv.now != now {
		iv.start, iv.end = iv.w.Interval(now, iv.loc)
		iv.now, iv.valid = now, true
	}
	return iv.start, iv.end
}

// windowMoves reports whether a window's start moves with the clock, so
// that what falls before it can be forgotten.
func windowMoves(w rules.Window) bool { return w.Kind == rules.Rolling }

// match runs a step's where over the batch's events of its names and
// returns the positions (into b.events) that match. The caller only reads
// them: for one name and no where they are the batch's own list.
func match(ctx context.Context, step *rules.Step, b *batchView, scratch *[]rules.Event) ([]int, error) {
	if len(step.Events) == 1 && step.Where == nil {
		return b.byName[step.Events[0]], nil
	}
	var pos []int
	for _, name := range step.Events {
		pos = append(pos, b.byName[name]...)
	}
	if len(pos) == 0 || step.Where == nil {
		return pos, nil
	}
	*scratch = (*scratch)[:0]
	for _, i := range pos {
		*scratch = append(*scratch, b.events[i])
	}
	bits := rules.NewBits(len(pos))
	if err := step.Where.MatchEvents(ctx, *scratch, bits); err != nil {
		return nil, err
	}
	out := pos[:0]
	for k, i := range pos {
		if bits.Has(k) {
			out = append(out, i)
		}
	}
	return out, nil
}

// didLeaf keeps the state of a did condition inside the reach of its
// window: columns per time bucket (bucketCol).
type didLeaf struct {
	cond   *rules.Did
	loc    *time.Location
	window interval
	unit   rules.Unit
	days   rules.DayCache
	// cols are the buckets, sorted by start; hit is the one added to
	// last, which a batch's next event mostly shares.
	cols    []*bucketCol
	hit     int
	values  map[string]uint32 // distinct property values, interned
	limits  *idLimits         // the engine's: how many values fit
	scratch []rules.Event
	seen    []uint32 // value's scratch for distinct (writer only)
	few     fewScratch
	adds    stepAdds // the users of the events the last ingest added
}

func newDidLeaf(c *rules.Did, loc *time.Location, limits *idLimits) *didLeaf {
	unit := c.Window.Unit
	if c.Window.Kind != rules.Rolling {
		unit = rules.Day
	}
	return &didLeaf{cond: c, loc: loc, window: interval{w: c.Window, loc: loc}, unit: unit, days: rules.DayCache{Loc: loc},
		values: map[string]uint32{}, limits: limits}
}

func (d *didLeaf) ingest(ctx context.Context, b *batchView, touched *roaring.Bitmap) error {
	pos, err := match(ctx, &d.cond.Step, b, &d.scratch)
	if err != nil {
		return err
	}
	start, end := d.window.at(b.now)
	// The users of the events added, a user once per event, sorted at the
	// end: added to touched at once, and for counts a lower bound of each
	// one's count (unless an event lies past the window's end).
	d.adds.reset(b.now)
	bound := d.cond.Aggregate.Func == rules.AggCount
	for _, i := range pos {
		ev := &b.events[i]
		if ev.Time < start || (d.cond.Window.Kind == rules.Between && ev.Time >= end) {
			continue // it can never be inside the window
		}
		if ev.Time >= end {
			bound = false // a future event: stored, not counted yet
		}
		switch a := d.cond.Aggregate; {
		case a.Numeric():
			v, ok := ev.Props[a.Prop].(float64)
			if !ok || math.IsNaN(v) {
				continue // no number to aggregate: the event is left out
			}
			d.addColumns(b.users[i], ev.Time, v, 0)
		case a.Func == rules.AggDistinct:
			v, ok := ev.Props[a.Prop]
			if !ok || v == nil {
				continue
			}
			key := fmt.Sprint(v)
			id, ok := d.values[key]
			if !ok {
				if uint64(len(d.values)) >= d.limits.values {
					// No id is free: another value's would merge the two.
					d.limits.refuseValue(d.cond.Aggregate.Prop, key)
					continue
				}
				id = uint32(len(d.values))
				d.values[key] = id
			}
			d.addColumns(b.users[i], ev.Time, 0, id)
		default:
			d.addColumns(b.users[i], ev.Time, 0, 0)
		}
		d.adds.users = append(d.adds.users, b.users[i])
	}
	slices.Sort(d.adds.users)
	touched.AddMany(d.adds.users)
	d.adds.valid = bound
	return nil
}

// countDistinct counts the distinct values of vs, reordering it. The lists
// are a user's events in one window: short, so sorting beats a map.
func countDistinct(vs []uint32) int {
	slices.Sort(vs)
	n := 0
	for i, v := range vs {
		if i == 0 || v != vs[i-1] {
			n++
		}
	}
	return n
}

func (d *didLeaf) empty() bool {
	switch d.cond.Aggregate.Func {
	case rules.AggAvg, rules.AggMin, rules.AggMax:
		return false
	}
	return d.cond.Compare.Holds(0)
}

func (d *didLeaf) advance(t0, t1 int64, touched *roaring.Bitmap) {
	d.adds.valid = false // the window may drop events: no bound any more
	d.slideColumns(t0, t1, touched)
}

func (d *didLeaf) holds(u uint32, now int64) bool {
	x, ok := d.value(u, now)
	return ok && d.cond.Compare.Holds(x)
}

// value is the aggregate over user u's matching events in the window when
// the clock reads now; ok is false for avg, min and max over no events,
// which are undefined (and then the condition does not hold).
func (d *didLeaf) value(u uint32, now int64) (x float64, ok bool) {
	start, end := d.window.at(now)
	return d.columnValue(u, start, end)
}

// seqLeaf keeps, per user, the times of each step's matching events (and of
// the then_not step) inside the reach of a sequence's window, in a
// seqStore: list k is step k's times, then the then_not step's if any.
type seqLeaf struct {
	cond      *rules.Sequence
	loc       *time.Location
	window    interval
	within    int64 // ms
	times     seqStore
	index     timeBuckets // by first-step times
	deadlines deadlineHeap
	scratch   []rules.Event
}

func newSeqLeaf(c *rules.Sequence, loc *time.Location) *seqLeaf {
	unit := c.Window.Unit
	if c.Window.Kind != rules.Rolling {
		unit = rules.Day
	}
	return &seqLeaf{cond: c, loc: loc, window: interval{w: c.Window, loc: loc}, within: c.Within.Milliseconds(),
		times: newSeqStore(seqLists(c)), index: newTimeBuckets(unit, loc)}
}

// seqLists is the number of lists a sequence keeps per user: one per
// step, and one for the then_not step if any.
func seqLists(c *rules.Sequence) int {
	if c.ThenNot != nil {
		return len(c.Steps) + 1
	}
	return len(c.Steps)
}

func (s *seqLeaf) ingest(ctx context.Context, b *batchView, touched *roaring.Bitmap) error {
	start, end := s.window.at(b.now)
	fixedEnd := s.cond.Window.Kind == rules.Between
	for k := range s.cond.Steps {
		pos, err := match(ctx, &s.cond.Steps[k], b, &s.scratch)
		if err != nil {
			return err
		}
		for _, i := range pos {
			t, u := b.events[i].Time, b.users[i]
			if t < start || (fixedEnd && (k == 0 && t >= end || t > end+s.within)) {
				continue
			}
			s.times.add(u, k, t)
			if k == 0 {
				s.index.add(t, u)
				if s.cond.ThenNot != nil && t+s.within >= b.now {
					heap.Push(&s.deadlines, deadline{at: t + s.within + 1, user: u})
				}
			}
			touched.Add(u)
		}
	}
	if s.cond.ThenNot != nil {
		pos, err := match(ctx, s.cond.ThenNot, b, &s.scratch)
		if err != nil {
			return err
		}
		for _, i := range pos {
			t, u := b.events[i].Time, b.users[i]
			if t <= start {
				continue
			}
			s.times.add(u, len(s.cond.Steps), t)
			touched.Add(u)
		}
	}
	s.times.compact()
	return nil
}

func (s *seqLeaf) empty() bool { return false }

func (s *seqLeaf) advance(t0, t1 int64, touched *roaring.Bitmap) {
	s.index.slide(s.cond.Window, s.loc, t0, t1, touched)
	for len(s.deadlines) > 0 && s.deadlines[0].at <= t1 {
		touched.Add(heap.Pop(&s.deadlines).(deadline).user)
	}
}

func (s *seqLeaf) holds(u uint32, now int64) bool {
	i, ok := s.times.lookup(u)
	if !ok {
		return false
	}
	start, end := s.window.at(now)
	if windowMoves(s.cond.Window) && !s.times.trim(i, start) {
		return false
	}
	r := *s.times.rec(i)
	first := s.times.list(r, 0)
	var thenNot []int64
	if s.cond.ThenNot != nil {
		thenNot = s.times.list(r, len(s.cond.Steps))
	}
	for _, a := range first {
		if a < start || a >= end {
			continue
		}
		if s.cond.ThenNot != nil {
			if now > a+s.within && !anyIn(thenNot, a, a+s.within) {
				return true
			}
			continue
		}
		if s.completes(r, a) {
			return true
		}
	}
	return false
}

// completes reports whether the steps after the first follow a, each
// strictly after the one before, all by a+within. Taking the earliest
// occurrence of each step is optimal: it leaves the most room for the next.
func (s *seqLeaf) completes(r seqRec, a int64) bool {
	t := a
	for k := 1; k < len(s.cond.Steps); k++ {
		l := s.times.list(r, k)
		i, _ := slices.BinarySearch(l, t+1)
		if i == len(l) || l[i] > a+s.within {
			return false
		}
		t = l[i]
	}
	return true
}

// anyIn reports whether sorted list has a time in (after, until].
func anyIn(list []int64, after, until int64) bool {
	i, _ := slices.BinarySearch(list, after+1)
	return i < len(list) && list[i] <= until
}

// deadline is a moment at which a drop-off may complete for a user.
type deadline struct {
	at   int64
	user uint32
}

// deadlineHeap is a min-heap of deadlines.
type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// profileLeaf keeps the users whose profile satisfies a predicate.
type profileLeaf struct {
	cond    *rules.ProfileCondition
	members *roaring.Bitmap
	batch   []rules.Profile
	// ofNobody is the predicate's value for an empty profile.
	ofNobody bool
}

func newProfileLeaf(c *rules.ProfileCondition) *profileLeaf {
	bits := rules.NewBits(1)
	// A probe: no user's profile, so no evaluation error to count.
	err := c.Predicate.MatchProfiles(rules.Probe(context.Background()), []rules.Profile{{}}, bits)
	return &profileLeaf{cond: c, members: roaring.New(), ofNobody: err == nil && bits.Has(0)}
}

func (p *profileLeaf) empty() bool { return p.ofNobody }

func (p *profileLeaf) ingest(ctx context.Context, b *batchView, touched *roaring.Bitmap) error {
	if b.profiled.IsEmpty() {
		return nil
	}
	p.batch = p.batch[:0]
	it := b.profiled.Iterator()
	for it.HasNext() {
		u := it.Next()
		attrs := b.profiles.profile(u)
		if attrs == nil {
			continue
		}
		p.batch = append(p.batch, rules.Profile{User: b.names[u], Attrs: attrs})
	}
	bits := rules.NewBits(len(p.batch))
	if err := p.cond.Predicate.MatchProfiles(ctx, p.batch, bits); err != nil {
		return err
	}
	k := 0
	it = b.profiled.Iterator()
	for it.HasNext() {
		u := it.Next()
		if !b.profiles.has(u) {
			// No profile at all (a new user, such as the million of an
			// upload): the value of an empty profile, judged once.
			if p.ofNobody {
				p.members.Add(u)
				touched.Add(u)
			} else if p.members.CheckedRemove(u) {
				touched.Add(u)
			}
			continue
		}
		if bits.Has(k) {
			p.members.Add(u)
		} else {
			p.members.Remove(u)
		}
		touched.Add(u)
		k++
	}
	return nil
}

func (p *profileLeaf) advance(int64, int64, *roaring.Bitmap) {}

func (p *profileLeaf) holds(u uint32, _ int64) bool { return p.members.Contains(u) }

// release ends copy-on-write (Capture.Release).
func (s *seqLeaf) release() {
	s.times.release()
	s.index.release()
}
