package engine

import (
	"slices"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
)

// membership is one segment's members, when each entered and the daily
// history. The writer changes members, a copy-on-write bitmap, without
// any lock; readers see view, a frozen copy of it (sharing the containers
// the writer has not changed since), which publish replaces under
// Engine.mu, with since, history and updated, in a critical section that
// does no per-user bitmap work.
type membership struct {
	members *roaring.Bitmap
	// view is the members readers see. Replaced, never changed, under mu;
	// nil until the first publish (no members).
	view *roaring.Bitmap
	// since is when each member entered, in Unix seconds (at most 6 bytes
	// a member, nothing for users who are not: see idMap). A user who
	// leaves loses the entry. Written under mu (write), in sorted batches;
	// a capture freezes it. (Publishing a frozen copy with each step, as
	// view is, copied every container a step touched: 13% of
	// BenchmarkIngest100Rules' CPU.)
	since   idMap
	history []historyDay
	updated time.Time
}

// frozen returns the published members: never nil, never changed.
func (m *membership) frozen() *roaring.Bitmap {
	if m.view == nil {
		return roaring.New()
	}
	return m.view
}

// contains reports whether the published members hold u.
func (m *membership) contains(u uint32) bool { return m.view != nil && m.view.Contains(u) }

// pendingMembership is one segment's changes of a step, applied to the
// writer's bitmap before the lock is taken.
type pendingMembership struct {
	s       *segmentState
	entered []uint32
	left    []uint32
	view    *roaring.Bitmap
}

// prepare applies enters and exits to the writer's bitmap and makes the
// frozen copy readers will see; publish does it outside the lock. The
// copy shares the bitmap's containers until the writer changes them
// (roaring copy-on-write): it costs the container count, not the members.
func (m *membership) prepare(s *segmentState, enter, exit []uint32) pendingMembership {
	p := pendingMembership{s: s, entered: enter[:0:0], left: exit[:0:0]}
	if !m.members.GetCopyOnWrite() {
		m.members.SetCopyOnWrite(true)
	}
	for _, u := range enter {
		if m.members.CheckedAdd(u) {
			p.entered = append(p.entered, u)
		}
	}
	for _, u := range exit {
		if m.members.CheckedRemove(u) {
			p.left = append(p.left, u)
		}
	}
	p.view = m.members.Clone()
	// Readers never write the view, and with copy-on-write off even a
	// reader's Clone of it only reads it.
	p.view.SetCopyOnWrite(false)
	return p
}

// ascending returns us sorted (a copy if it was not).
func ascending(us []uint32) []uint32 {
	if slices.IsSorted(us) {
		return us
	}
	return slices.Sorted(slices.Values(us))
}

// commit publishes prepared changes at time now on day today. Under mu
// (write): it costs the since of the users who entered or left (a lookup
// and a move of at most a container's entries each, or a merge of the
// container for many) and a pointer.
func (m *membership) commit(p *pendingMembership, now time.Time, today dayIndex) {
	if len(m.history) == 0 || m.history[len(m.history)-1].day != today {
		m.history = append(m.history, historyDay{day: today, size: m.frozen().GetCardinality()})
		if len(m.history) > maxHistoryDays {
			m.history = m.history[len(m.history)-maxHistoryDays:]
		}
	}
	h := &m.history[len(m.history)-1]
	m.since.setSorted(ascending(p.left), 0)
	m.since.setSorted(ascending(p.entered), uint32(now.Unix()))
	h.entered += uint64(len(p.entered))
	h.left += uint64(len(p.left))
	m.view = p.view
	h.size = m.view.GetCardinality()
	m.updated = now
}

// publishMembers makes the writer's bitmap what readers see, as restored
// from a snapshot. Before Run.
func (m *membership) publishMembers() {
	m.members.SetCopyOnWrite(true)
	m.view = m.members.Clone()
	m.view.SetCopyOnWrite(false)
}

// MemberView implements bus.Membership: the user's membership of the
// segments (nil: all), each with its state, and the sequence and clock of
// the step they reflect, all under one read lock so that the three agree.
// segments must hold no repeats.
func (e *Engine) MemberView(user string, segments []string) api.MemberView {
	v, _ := e.memberView(user, segments, false)
	return v
}

// memberView is MemberView; with try it gives up at once (ok false)
// rather than wait for a lock (TryMemberView).
func (e *Engine) memberView(user string, segments []string, try bool) (_ api.MemberView, ok bool) {
	var v api.MemberView
	var asked []*segmentState
	if segments != nil {
		asked = make([]*segmentState, 0, len(segments))
		for _, id := range segments {
			if s, ok := e.ids()[id]; ok {
				asked = append(asked, s)
			} else {
				v.Unknown = append(v.Unknown, id)
			}
		}
		if len(asked) > 1 {
			slices.SortFunc(asked, func(a, b *segmentState) int { return strings.Compare(a.seg.ID, b.seg.ID) })
		}
	}
	type hit struct {
		i   int
		sec uint32
	}
	var buf [8]hit
	hits := buf[:0]
	if !try {
		e.mu.RLock()
	} else if !e.mu.TryRLock() {
		return v, false
	}
	if segments == nil {
		asked = e.segments
	}
	// The user is looked up under the lock: a user a step published is
	// known by then (the writer interns before it publishes), so the
	// answer never contradicts AsOf.
	id, known, ok := e.users.tryLookup(user, try)
	if !ok {
		e.mu.RUnlock()
		return v, false
	}
	v.AsOf = api.AsOf{Seq: e.stats.LastSeq, Time: e.stats.Clock}
	v.Segments = make([]api.SegmentView, len(asked))
	for i, s := range asked {
		sv := &v.Segments[i]
		sv.Segment = s.seg.ID
		if err := e.servable(s); err != nil {
			sv.Err, sv.State = err, api.StateRebuilding
			if s.stale != nil {
				sv.State = e.staleWord(s)
			}
			continue
		}
		sv.State, sv.Served, sv.Revision = api.StateExact, true, s.revision
		if s.next != 0 || s.nextSeg != nil {
			// A new revision rebuilds beside this one (replace.go): the
			// answer is exact for the revision served, not the newest.
			sv.State = api.StateRebuilding
		}
		if known && s.contains(id) {
			sv.Member = true
			hits = append(hits, hit{i, s.since.get(id)})
		}
	}
	e.mu.RUnlock()
	for _, h := range hits {
		v.Segments[h.i].Since = time.Unix(int64(h.sec), 0).In(e.loc)
	}
	return v, true
}
