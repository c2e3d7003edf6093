package engine

import (
	"slices"
	"strings"
	"time"

	"github.com/segd/segd/bus/api"
)

// MemberView implements bus.Membership: the user's membership of the
// segments (nil: all), each with its state, and the sequence and clock of
// the step they reflect, all under one read lock so that the three agree.
// segments must hold no repeats.
func (e *Engine) MemberView(user string, segments []string) api.MemberView {
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
	e.mu.RLock()
	if segments == nil {
		asked = e.segments
	}
	// The user is looked up under the lock: a user a step published is
	// known by then (the writer interns before it publishes), so the
	// answer never contradicts AsOf.
	id, known := e.users.lookup(user)
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
		if known && s.members.Contains(id) {
			sv.Member = true
			var sec uint32
			if int(id) < len(s.since) {
				sec = s.since[id]
			}
			hits = append(hits, hit{i, sec})
		}
	}
	e.mu.RUnlock()
	for _, h := range hits {
		v.Segments[h.i].Since = time.Unix(int64(h.sec), 0).In(e.loc)
	}
	return v
}
