package host

import (
	"context"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
)

// userEventsDays is user.get's default span of events: the last week.
const userEventsDays = 7

// userGet answers user.get: the engine's profile, memberships and
// explanation, and the analysis index's timeline. The span of days is cut
// to the days the index keeps.
func (s *Server) userGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error) {
	if s.scatter != nil {
		return s.scatter.UserGet(ctx, r)
	}
	st, err := s.engine.UserState(ctx, r.User, r.Segment)
	if err != nil {
		return nil, err
	}
	m := s.membership()
	rep := &api.UserGetReply{User: r.User, Known: st.Known, Profile: st.Profile,
		Segments: m.UserMemberships(r.User), Explain: st.Explain, Events: []api.UserEvent{}}
	if rep.Segments == nil {
		rep.Segments = []api.Membership{}
	}
	if u, ok := m.(interface{ UnavailableSegments() []string }); ok {
		rep.Unavailable = u.UnavailableSegments()
	}
	ix := s.analysis
	today := ix.Today()
	to := today
	if r.To != "" {
		to, _ = analysis.ParseDay(r.To) // the service checked it
	}
	from := to - userEventsDays + 1
	if r.From != "" {
		from, _ = analysis.ParseDay(r.From)
	}
	from = max(from, today-analysis.Day(ix.Days())+1)
	to = min(to, today)
	if from > to {
		from = to
	}
	rep.From, rep.To = from.String(), to.String()
	id, ok := s.engine.UserID(r.User)
	if !ok {
		return rep, nil
	}
	events, more := ix.UserEvents(id, from, to, r.Offset, r.Limit)
	loc := s.engine.Location()
	for _, e := range events {
		rep.Events = append(rep.Events, api.UserEvent{Time: time.UnixMilli(e.Time).In(loc).Format(time.RFC3339Nano), Event: e.Event})
	}
	if more {
		rep.NextOffset = r.Offset + len(events)
	}
	return rep, nil
}
