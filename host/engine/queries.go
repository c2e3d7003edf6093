package engine

import (
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

// MemberSince reports whether user is in segment and, if so, since when.
func (e *Engine) MemberSince(user, segment string) (bool, time.Time, error) {
	s, ok := e.byID[segment]
	if !ok {
		return false, time.Time{}, errNotFound(segment)
	}
	id, ok := e.users.lookup(user)
	if !ok {
		return false, time.Time{}, nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if !s.members.Contains(id) {
		return false, time.Time{}, nil
	}
	return true, time.Unix(int64(s.since[id]), 0).In(e.loc), nil
}

// SegmentBitmap returns a copy of a segment's members as dense user ids;
// UserName turns them back into external ids.
func (e *Engine) SegmentBitmap(segment string) (*roaring.Bitmap, error) {
	s, ok := e.byID[segment]
	if !ok {
		return nil, errNotFound(segment)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return s.members.Clone(), nil
}

// SegmentUpdated returns when a segment's membership last changed (zero if
// it never has).
func (e *Engine) SegmentUpdated(segment string) (time.Time, error) {
	s, ok := e.byID[segment]
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
	s, ok := e.byID[segment]
	if !ok {
		return nil, errNotFound(segment)
	}
	first, last := dayOf(from.UnixMilli(), e.loc), dayOf(to.UnixMilli(), e.loc)
	e.mu.RLock()
	defer e.mu.RUnlock()
	last = min(last, dayOf(e.clock.Now().UnixMilli(), e.loc))
	days := s.days(first, last)
	out := make([]HistoryDay, len(days))
	for i, d := range days {
		y, m, dd := time.Unix(int64(d.day)*86400, 0).UTC().Date()
		out[i] = HistoryDay{Day: time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Format(time.DateOnly),
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
