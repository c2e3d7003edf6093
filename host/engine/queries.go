package engine

import (
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/rules"
)

// MemberSince reports whether user is in segment and, if so, since when.
func (e *Engine) MemberSince(user, segment string) (bool, time.Time, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return false, time.Time{}, errNotFound(segment)
	}
	id, ok := e.users.lookup(user)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.servable(s); err != nil {
		return false, time.Time{}, err
	}
	if !ok || !s.contains(id) {
		return false, time.Time{}, nil
	}
	return true, time.Unix(int64(s.since.get(id)), 0).In(e.loc), nil
}

// SegmentBitmap returns a copy of a segment's members as dense user ids;
// UserName turns them back into external ids.
func (e *Engine) SegmentBitmap(segment string) (*roaring.Bitmap, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return nil, errNotFound(segment)
	}
	e.mu.RLock()
	err := e.servable(s)
	view := s.frozen()
	e.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return view.Clone(), nil // a deep copy: the view never changes
}

// SegmentUpdated returns when a segment's membership last changed (zero if
// it never has).
func (e *Engine) SegmentUpdated(segment string) (time.Time, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return time.Time{}, errNotFound(segment)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return s.updated, nil
}

// History returns a segment's size, entries and exits per calendar day from
// the day of `from` to the day of `to` (inclusive, in the engine's time
// zone), capped at today.
func (e *Engine) History(segment string, from, to time.Time) ([]HistoryDay, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return nil, errNotFound(segment)
	}
	first, last := dayOf(from.UnixMilli(), e.loc), dayOf(to.UnixMilli(), e.loc)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.servable(s); err != nil {
		return nil, err
	}
	last = min(last, dayOf(e.clock.Now().UnixMilli(), e.loc))
	days := s.days(first, last)
	out := make([]HistoryDay, len(days))
	for i, d := range days {
		out[i] = HistoryDay{Day: d.day.String(),
			Size: d.size, Entered: d.entered, Left: d.left}
	}
	return out, nil
}

// UserName returns the external id of a dense user id.
func (e *Engine) UserName(id uint32) string { return e.users.name(id) }

// UserID returns the dense id of an external user id, if segd has seen it.
func (e *Engine) UserID(user string) (uint32, bool) { return e.users.lookup(user) }

// Location is the time zone of calendar days.
func (e *Engine) Location() *time.Location { return e.loc }

// Now reads the engine's clock.
func (e *Engine) Now() time.Time { return e.clock.Now() }

// UserMemberships implements bus.Membership: the user's segments in id
// order with when the user entered each, under one short read lock.
func (e *Engine) UserMemberships(user string) []api.Membership {
	out := []api.Membership{}
	id, ok := e.users.lookup(user)
	if !ok {
		return out
	}
	type hit struct {
		seg   string
		since uint32
	}
	var buf [16]hit
	hits := buf[:0]
	e.mu.RLock()
	for _, s := range e.segments {
		if s.served() && s.contains(id) {
			hits = append(hits, hit{s.seg.ID, s.since.get(id)})
		}
	}
	e.mu.RUnlock()
	for _, h := range hits {
		out = append(out, api.Membership{Segment: h.seg, Since: time.Unix(int64(h.since), 0).In(e.loc).Format(time.RFC3339)})
	}
	return out
}

// Segment returns a segment's definition and what segment.list says of it.
func (e *Engine) Segment(segment string) (*rules.Segment, api.SegmentInfo, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return nil, api.SegmentInfo{}, errNotFound(segment)
	}
	for _, info := range e.Segments() {
		if info.ID == segment {
			e.mu.RLock() // a definition replaced while segd runs changes it
			def := s.seg
			e.mu.RUnlock()
			return def, info, nil
		}
	}
	return nil, api.SegmentInfo{}, errNotFound(segment)
}

// SegmentPage returns up to limit members of a segment with dense ids of at
// least from, ascending, and whether more follow.
func (e *Engine) SegmentPage(segment string, from uint32, limit int) ([]uint32, bool, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return nil, false, errNotFound(segment)
	}
	ids := make([]uint32, 0, min(limit, 4096))
	e.mu.RLock()
	err := e.servable(s)
	view := s.frozen()
	e.mu.RUnlock()
	if err != nil {
		return nil, false, err
	}
	it := view.Iterator() // the view never changes: no lock needed
	it.AdvanceIfNeeded(from)
	for it.HasNext() {
		if len(ids) == limit {
			return ids, true, nil
		}
		ids = append(ids, it.Next())
	}
	return ids, false, nil
}

// SegmentBitmaps returns copies of several segments' members as of one
// step (their views, taken under one read lock), so that set algebra sees
// one instant, and the number of
// users seen.
func (e *Engine) SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error) {
	states := make([]*segmentState, len(segments))
	for i, id := range segments {
		s, ok := e.ids()[id]
		if !ok {
			return nil, 0, errNotFound(id)
		}
		states[i] = s
	}
	out := make([]*roaring.Bitmap, len(states))
	e.mu.RLock()
	for i, s := range states {
		if err := e.servable(s); err != nil {
			e.mu.RUnlock()
			return nil, 0, err
		}
		out[i] = s.frozen()
	}
	universe := e.stats.Users
	e.mu.RUnlock()
	// The views never change: copy them outside the lock.
	for i := range out {
		out[i] = out[i].Clone()
	}
	return out, uint32(universe), nil
}

// UserNames returns the external ids of dense ids, under one lock.
func (e *Engine) UserNames(ids []uint32) []string {
	out := make([]string, len(ids))
	e.users.mu.RLock()
	defer e.users.mu.RUnlock()
	for i, id := range ids {
		out[i] = e.users.names[id]
	}
	return out
}

// TryMemberView is MemberView that never waits (bus.QuickMembership): ok is
// false, at once, while the writer holds or waits for a lock the read
// needs (a step being published, new users being added), and the caller
// answers some other way. The service answers on its request goroutine
// only what never waits, so one stuck read cannot hold the requests behind
// it.
func (e *Engine) TryMemberView(user string, segments []string) (api.MemberView, bool) {
	return e.memberView(user, segments, true)
}
