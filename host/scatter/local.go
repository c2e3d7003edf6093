package scatter

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// LocalConfig configures Local.
type LocalConfig struct {
	// Engine and Index are the partition's engine and analysis index (the
	// index observes the engine's events).
	Engine *engine.Engine
	Index  *analysis.Index
	// Predicates are the ids of the rule files' named predicates, which
	// the index keeps as events named "@ID".
	Predicates []string
	// Replaying, if set, reports whether the partition still replays its
	// log after a start: meanwhile its active segments show "rebuilding"
	// and its exact memberships "replaying", as on one host.
	Replaying func() bool
	// Status, if set, completes the engine's status with what the host
	// knows of the partition (readiness, replay, snapshots, dead letters,
	// change feed).
	Status func(api.StatusReply) api.StatusReply
}

// Local is the Part of a partition served in this process: its engine and
// analysis index. It answers as one host answers today (the logic of
// package host's segment store, analyzer and user.get, which are
// unexported there, is repeated here so that a host of P partitions and
// the tests of this package use the same adapter).
type Local struct {
	e          *engine.Engine
	ix         *analysis.Index
	predicates map[string]bool
	replaying  func() bool
	status     func(api.StatusReply) api.StatusReply
}

var _ Part = (*Local)(nil)

// inProcess marks a Part whose calls are function calls (Scatter.eachQuick).
func (*Local) inProcess() {}

// NewLocal returns the Part of an engine and its analysis index.
func NewLocal(cfg LocalConfig) *Local {
	l := &Local{e: cfg.Engine, ix: cfg.Index, predicates: map[string]bool{}, replaying: cfg.Replaying, status: cfg.Status}
	for _, p := range cfg.Predicates {
		l.predicates[p] = true
	}
	if l.replaying == nil {
		l.replaying = func() bool { return false }
	}
	return l
}

// IsMember implements bus.Membership.
func (l *Local) IsMember(user, segment string) (bool, error) { return l.e.IsMember(user, segment) }

// MemberSince implements bus.Membership.
func (l *Local) MemberSince(user, segment string) (bool, time.Time, error) {
	return l.e.MemberSince(user, segment)
}

// UserSegments implements bus.Membership.
func (l *Local) UserSegments(user string) []string { return l.e.UserSegments(user) }

// UserMemberships implements bus.Membership.
func (l *Local) UserMemberships(user string) []api.Membership { return l.e.UserMemberships(user) }

// UnavailableSegments implements Part.
func (l *Local) UnavailableSegments() []string { return l.e.UnavailableSegments() }

// SegmentCount implements bus.Membership and bus.SegmentStore.
func (l *Local) SegmentCount(segment string) (uint64, error) { return l.e.SegmentCount(segment) }

// Segments implements bus.Membership: active segments are "rebuilding"
// while the partition replays its log.
func (l *Local) Segments() []api.SegmentInfo {
	list := l.e.Segments()
	if l.replaying() {
		for i := range list {
			if list[i].Status == "active" {
				list[i].Status = "rebuilding"
			}
		}
	}
	return list
}

// Status implements bus.Membership: the engine's, completed by
// LocalConfig.Status.
func (l *Local) Status() api.StatusReply {
	st := l.e.Status()
	if l.status != nil {
		st = l.status(st)
	}
	return st
}

// MemberView implements bus.Membership: exact memberships read while the
// partition replays its log are "replaying".
func (l *Local) MemberView(user string, segments []string) bus.MemberView {
	v := l.e.MemberView(user, segments)
	if l.replaying() {
		for i := range v.Segments {
			if v.Segments[i].State == api.StateExact {
				v.Segments[i].State = api.StateReplaying
			}
		}
	}
	return v
}

// SegmentDetail implements bus.SegmentStore.
func (l *Local) SegmentDetail(segment string) (api.SegmentGetReply, error) {
	def, info, err := l.e.Segment(segment)
	if err != nil {
		return api.SegmentGetReply{}, err
	}
	if info.Status == "active" && l.replaying() {
		info.Status = "rebuilding"
	}
	rep := api.SegmentGetReply{SegmentInfo: info, Definition: def.Source}
	if updated, err := l.e.SegmentUpdated(segment); err == nil && !updated.IsZero() {
		rep.Updated = updated.In(l.e.Location()).Format(time.RFC3339)
	}
	return rep, nil
}

// SegmentStatic implements bus.SegmentStore.
func (l *Local) SegmentStatic(segment string) (bool, error) {
	def, _, err := l.e.Segment(segment)
	if err != nil {
		return false, err
	}
	return def.Kind() == rules.KindStatic, nil
}

// SegmentPage implements bus.SegmentStore (local ids).
func (l *Local) SegmentPage(segment string, from uint32, limit int) ([]uint32, bool, error) {
	return l.e.SegmentPage(segment, from, limit)
}

// SegmentBitmaps implements bus.SegmentStore (local ids).
func (l *Local) SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error) {
	return l.e.SegmentBitmaps(segments)
}

// UserNames implements bus.SegmentStore (local ids).
func (l *Local) UserNames(ids []uint32) ([]string, error) { return l.e.UserNames(ids), nil }

// History implements bus.SegmentStore.
func (l *Local) History(segment string, from, to time.Time) ([]api.HistoryDay, error) {
	days, err := l.e.History(segment, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]api.HistoryDay, len(days))
	for i, d := range days {
		out[i] = api.HistoryDay{Day: d.Day, Size: d.Size, Entered: d.Entered, Left: d.Left}
	}
	return out, nil
}

// HistoryStart implements Part.
func (l *Local) HistoryStart(segment string) string { return l.e.HistoryStart(segment) }

// Location implements bus.SegmentStore.
func (l *Local) Location() *time.Location { return l.e.Location() }

// Now implements bus.SegmentStore.
func (l *Local) Now() time.Time { return l.e.Now() }

// eventName resolves an event name as a request gives it: "@ID" names a
// named predicate, which must exist.
func (l *Local) eventName(name string) (string, error) {
	if id, ok := strings.CutPrefix(name, "@"); ok && !l.predicates[id] {
		return "", fmt.Errorf("predicate %q is not defined in the rule files: %w", id, bus.ErrNotFound)
	}
	return name, nil
}

// span resolves a request's dates: To defaults to today, From to 29 days
// before To. The service has checked their format and order.
func (l *Local) span(from, to string) (analysis.Day, analysis.Day) {
	t := l.ix.Today()
	if to != "" {
		t, _ = analysis.ParseDay(to)
	}
	f := t - 29
	if from != "" {
		f, _ = analysis.ParseDay(from)
	}
	if f > t { // only from was given, after today
		t = f
	}
	return f, min(t, f+bus.MaxAnalysisDays-1)
}

// segments resolves segment names to bitmaps, after the all-users
// baseline; repeats are dropped. An unknown segment is a 404.
func (l *Local) segments(names []string) ([]analysis.Segment, error) {
	out := []analysis.Segment{{ID: api.AllUsers}}
	seen := map[string]bool{api.AllUsers: true}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		bm, err := l.e.SegmentBitmap(n)
		if err != nil {
			return nil, err
		}
		out = append(out, analysis.Segment{ID: n, Users: bm})
	}
	return out, nil
}

// AnalyzeEvents implements bus.Analyzer.
func (l *Local) AnalyzeEvents(ctx context.Context, r *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	for _, ev := range r.Events {
		if _, err := l.eventName(ev); err != nil {
			return nil, err
		}
	}
	q := analysis.EventsQuery{Events: r.Events}
	q.From, q.To = l.span(r.From, r.To)
	days := int(q.To-q.From) + 1
	field := "events"
	if len(r.Segments) > 0 {
		field = "segments"
	}
	if err := bus.CheckAnalysisValues(field, (len(r.Segments)+1)*len(r.Events)*len(r.Measures)*days, fmt.Sprintf(
		"%d segments with all users × %d events × %d measures × %d days", len(r.Segments)+1, len(r.Events), len(r.Measures), days)); err != nil {
		return nil, err
	}
	segs, err := l.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q.Segments = segs
	for _, m := range r.Measures {
		pm, _ := api.ParseMeasure(m)
		q.Measures = append(q.Measures, pm)
	}
	return l.ix.EventsContext(ctx, q)
}

// AnalyzeFunnel implements bus.Analyzer.
func (l *Local) AnalyzeFunnel(ctx context.Context, r *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	segs, err := l.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q := analysis.FunnelQuery{Segments: segs}
	q.From, q.To = l.span(r.From, r.To)
	q.Window, _ = api.ParseWindow(r.Window)
	q.Mode, _ = analysis.ParseFunnelMode(r.Mode)
	for _, s := range r.Steps {
		name := s.Event
		if s.Predicate != "" {
			name = "@" + s.Predicate
		}
		if name, err = l.eventName(name); err != nil {
			return nil, err
		}
		q.Steps = append(q.Steps, analysis.Step{Event: name})
	}
	res, err := l.ix.FunnelContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &api.AnalysisFunnelReply{Steps: r.Steps, Window: r.Window, Mode: q.Mode.String(),
		From: q.From.String(), To: q.To.String(), Segments: res}, nil
}

// AnalyzeRetention implements bus.Analyzer.
func (l *Local) AnalyzeRetention(ctx context.Context, r *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	for _, ev := range []string{r.StartEvent, r.ReturnEvent} {
		if _, err := l.eventName(ev); err != nil {
			return nil, err
		}
	}
	q := analysis.RetentionQuery{StartEvent: r.StartEvent, ReturnEvent: r.ReturnEvent, Days: r.Days,
		Recurring: r.Mode == api.RetentionRecurring}
	q.From, q.To = l.span(r.From, r.To)
	cohorts := int(q.To-q.From) + 1
	field := "days"
	if len(r.Segments) > 0 {
		field = "segments"
	}
	if err := bus.CheckAnalysisValues(field, (len(r.Segments)+1)*cohorts*r.Days, fmt.Sprintf(
		"%d segments with all users × %d cohorts × %d days", len(r.Segments)+1, cohorts, r.Days)); err != nil {
		return nil, err
	}
	segs, err := l.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q.Segments = segs
	res, err := l.ix.RetentionContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &api.AnalysisRetentionReply{Mode: r.Mode, Days: r.Days, Segments: res}, nil
}

// AnalyzeTrend implements bus.Analyzer: segment sizes from the engine's
// daily history; the all-users baseline from the analysis index (users
// with an event on or before each day).
func (l *Local) AnalyzeTrend(ctx context.Context, r *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	from, to := l.span(r.From, r.To)
	loc := l.ix.Location()
	base := l.ix.Users(from, to)
	reply := &api.AnalysisTrendReply{Days: make([]string, len(base))}
	all := api.TrendSegment{Segment: api.AllUsers, Sizes: make([]uint64, len(base)),
		Entered: make([]uint64, len(base)), Left: make([]uint64, len(base))}
	for i, d := range base {
		reply.Days[i] = d.Day.String()
		all.Sizes[i], all.Entered[i] = d.Seen, d.First
	}
	reply.Segments = append(reply.Segments, all)
	seen := map[string]bool{api.AllUsers: true}
	for _, name := range r.Segments {
		if seen[name] {
			continue
		}
		seen[name] = true
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		days, err := l.e.History(name, time.UnixMilli(from.Start(loc)), time.UnixMilli(to.Start(loc)))
		if err != nil {
			return nil, err
		}
		ts := api.TrendSegment{Segment: name, Sizes: make([]uint64, len(base)),
			Entered: make([]uint64, len(base)), Left: make([]uint64, len(base)), HistoryStart: l.e.HistoryStart(name)}
		for _, h := range days {
			d, err := analysis.ParseDay(h.Day)
			if err != nil || d < from || int(d-from) >= len(base) {
				continue
			}
			i := d - from
			ts.Sizes[i], ts.Entered[i], ts.Left[i] = h.Size, h.Entered, h.Left
		}
		reply.Segments = append(reply.Segments, ts)
	}
	return reply, nil
}

// userEventsDays is user.get's default span of events: the last week.
const userEventsDays = 7

// UserGet implements Part: the engine's profile, memberships and
// explanation, and the analysis index's timeline. The span of days is cut
// to the days the index keeps.
func (l *Local) UserGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error) {
	st, err := l.e.UserState(ctx, r.User, r.Segment)
	if err != nil {
		return nil, err
	}
	rep := &api.UserGetReply{User: r.User, Known: st.Known, Profile: st.Profile,
		Segments: l.e.UserMemberships(r.User), Explain: st.Explain, Events: []api.UserEvent{},
		Unavailable: l.e.UnavailableSegments()}
	if rep.Segments == nil {
		rep.Segments = []api.Membership{}
	}
	ix := l.ix
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
	id, ok := l.e.UserID(r.User)
	if !ok {
		return rep, nil
	}
	events, more := ix.UserEvents(id, from, to, r.Offset, r.Limit)
	loc := l.e.Location()
	for _, e := range events {
		rep.Events = append(rep.Events, api.UserEvent{Time: time.UnixMilli(e.Time).In(loc).Format(time.RFC3339Nano), Event: e.Event})
	}
	if more {
		rep.NextOffset = r.Offset + len(events)
	}
	return rep, nil
}
