package engine

import (
	"context"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/rules"
)

// didState is the running state of one behavioral rule: per user, the
// matching events per calendar day, and per day, the users who have some, so
// that a day leaving the window names exactly the users to judge again.
type didState struct {
	segment    *segmentState
	did        *rules.Did
	window     dayIndex
	zeroMember bool // whether a user with no matching event is a member
	perUser    map[uint32][]dayCount
	dayUsers   map[dayIndex]*roaring.Bitmap
	scratch    []rules.Event
	positions  []int
}

// dayCount is a user's matching events on one day; a user's list is sorted
// by day.
type dayCount struct {
	day dayIndex
	n   uint32
}

func newDidState(s *segmentState) *didState {
	return &didState{
		segment:    s,
		did:        s.seg.Did,
		window:     dayIndex(s.seg.Did.Window.Days),
		zeroMember: s.seg.Did.Count.Holds(0),
		perUser:    map[uint32][]dayCount{},
		dayUsers:   map[dayIndex]*roaring.Bitmap{},
	}
}

// first returns the first day inside the window that ends today.
func (d *didState) first(today dayIndex) dayIndex { return today - d.window + 1 }

// ingest counts the batch's matching events and judges their users again.
func (d *didState) ingest(ctx context.Context, e *Engine, events []rules.Event, users []uint32, days []dayIndex, byName map[string][]int, changes changeSet) {
	d.positions = d.positions[:0]
	for _, name := range d.did.Events {
		d.positions = append(d.positions, byName[name]...)
	}
	if len(d.positions) == 0 {
		return
	}
	var matched rules.Bits
	if d.did.Where != nil {
		d.scratch = d.scratch[:0]
		for _, i := range d.positions {
			d.scratch = append(d.scratch, events[i])
		}
		matched = rules.NewBits(len(d.scratch))
		if err := d.did.Where.MatchEvents(ctx, d.scratch, matched); err != nil {
			e.failSegment(d.segment, err)
			return
		}
	}
	first := d.first(e.today)
	touched := roaring.New()
	for k, i := range d.positions {
		if matched != nil && !matched.Has(k) {
			continue
		}
		day := days[i]
		if day < first {
			continue // older than the window: it can never count
		}
		u := users[i]
		d.add(u, day)
		bm := d.dayUsers[day]
		if bm == nil {
			bm = roaring.New()
			d.dayUsers[day] = bm
		}
		bm.Add(u)
		touched.Add(u)
	}
	it := touched.Iterator()
	for it.HasNext() {
		u := it.Next()
		changes.set(d.segment, u, d.member(u, e.today))
	}
}

// add counts one event of user u on day.
func (d *didState) add(u uint32, day dayIndex) {
	list := d.perUser[u]
	i := len(list)
	for i > 0 && list[i-1].day > day {
		i--
	}
	if i > 0 && list[i-1].day == day {
		list[i-1].n++
		return
	}
	list = append(list, dayCount{})
	copy(list[i+1:], list[i:])
	list[i] = dayCount{day: day, n: 1}
	d.perUser[u] = list
}

// member judges user u as of today, dropping the days that have left the
// window for good.
func (d *didState) member(u uint32, today dayIndex) bool {
	first := d.first(today)
	list := d.perUser[u]
	drop := 0
	for drop < len(list) && list[drop].day < first {
		drop++
	}
	if drop > 0 {
		list = list[drop:]
		if len(list) == 0 {
			delete(d.perUser, u)
		} else {
			d.perUser[u] = list
		}
	}
	var n uint32
	for _, c := range list {
		if c.day > today {
			break // dated in the future: counts once its day comes
		}
		n += c.n
	}
	return d.did.Count.Holds(float64(n))
}

// rollover moves the window from day `from` to day `to`: users with events
// on days that left the window, or on future days that entered it, are
// judged again.
func (d *didState) rollover(from, to dayIndex, changes changeSet) {
	affected := roaring.New()
	oldFirst, newFirst := d.first(from), d.first(to)
	for day, bm := range d.dayUsers {
		leaving := day >= oldFirst && day < newFirst
		entering := day > from && day <= to
		if leaving || entering {
			affected.Or(bm)
		}
		if day < newFirst {
			delete(d.dayUsers, day)
		}
	}
	it := affected.Iterator()
	for it.HasNext() {
		u := it.Next()
		changes.set(d.segment, u, d.member(u, to))
	}
}

// attrState is the running state of one attribute rule; the profiles it
// reads are the engine's.
type attrState struct {
	segment *segmentState
	batch   []rules.Profile
}

// evaluate judges the users whose profiles changed (or who are new).
func (a *attrState) evaluate(ctx context.Context, e *Engine, users *roaring.Bitmap, changes changeSet) {
	if users.IsEmpty() {
		return
	}
	a.batch = a.batch[:0]
	it := users.Iterator()
	for it.HasNext() {
		u := it.Next()
		a.batch = append(a.batch, rules.Profile{User: e.users.names[u], Attrs: e.profiles[u]})
	}
	matched := rules.NewBits(len(a.batch))
	if err := a.segment.seg.Profile.Predicate.MatchProfiles(ctx, a.batch, matched); err != nil {
		e.failSegment(a.segment, err)
		return
	}
	k := 0
	it = users.Iterator()
	for it.HasNext() {
		changes.set(a.segment, it.Next(), matched.Has(k))
		k++
	}
}
