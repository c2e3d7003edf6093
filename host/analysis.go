package host

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// wireAnalysis gives the analysis index the engine's events. It keeps the
// days of the events stream's retention.
func (s *Server) wireAnalysis(cfg *engine.Config) {
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock.Now
	}
	ix := analysis.New(analysis.Config{Location: cfg.Location, Days: s.retentionDays(), Now: now, Logger: s.cfg.Logger})
	cfg.Observer = ix
	if len(s.predicates) > 0 {
		cfg.Observer = &predicateObserver{next: ix, predicates: s.predicates, logger: s.cfg.Logger}
	}
	s.analysis = ix
}

// predicateObserver records, beside every event, the events that match
// each named predicate as events named "@ID", so that the index serves
// named predicates exactly as it serves event names.
type predicateObserver struct {
	next       engine.EventObserver
	predicates []*rules.NamedPredicate
	logger     *slog.Logger
	scratch    []rules.Event
}

// ObserveEvents implements engine.EventObserver.
func (o *predicateObserver) ObserveEvents(events []rules.Event, users []uint32) {
	o.next.ObserveEvents(events, users)
	for _, p := range o.predicates {
		var pos []int
		for i := range events {
			if slices.Contains(p.Events, events[i].Name) {
				pos = append(pos, i)
			}
		}
		if len(pos) == 0 {
			continue
		}
		bits := rules.NewBits(len(pos))
		if p.Where == nil {
			for k := range pos {
				bits.Set(k)
			}
		} else {
			o.scratch = o.scratch[:0]
			for _, i := range pos {
				o.scratch = append(o.scratch, events[i])
			}
			if err := p.Where.MatchEvents(context.Background(), o.scratch, bits); err != nil {
				o.logger.Error("named predicate failed a batch; analysis of it misses these events", "predicate", p.ID, "error", err)
				continue
			}
		}
		var matched []rules.Event
		var ids []uint32
		for k, i := range pos {
			if bits.Has(k) {
				ev := events[i]
				ev.Name = "@" + p.ID
				matched = append(matched, ev)
				ids = append(ids, users[i])
			}
		}
		if len(matched) > 0 {
			o.next.ObserveEvents(matched, ids)
		}
	}
}

// AnalysisIndex returns the server's analysis index (with several
// partitions, the first partition's).
func (s *Server) AnalysisIndex() *analysis.Index { return s.partitions()[0].analysis }

// analysisEndpoints are the segd.v1.analysis.* endpoints.
func (s *Server) analysisEndpoints() []bus.Endpoint {
	if s.scatter != nil {
		return bus.AnalysisEndpoints(s.scatter)
	}
	a := &analyzer{ix: s.AnalysisIndex(), engine: s.engine, predicates: map[string]bool{}}
	for _, p := range s.predicates {
		a.predicates[p.ID] = true
	}
	return bus.AnalysisEndpoints(a)
}

// analyzer answers the analysis endpoints from the index and the engine.
type analyzer struct {
	ix         *analysis.Index
	engine     *engine.Engine
	predicates map[string]bool // named predicates, indexed as "@ID"
}

// eventName resolves an event name as a request gives it: "@ID" names a
// named predicate, which must exist.
func (a *analyzer) eventName(name string) (string, error) {
	if id, ok := strings.CutPrefix(name, "@"); ok && !a.predicates[id] {
		return "", fmt.Errorf("predicate %q is not defined in the rule files: %w", id, bus.ErrNotFound)
	}
	return name, nil
}

var _ bus.Analyzer = (*analyzer)(nil)

// span resolves a request's dates: To defaults to today, From to 29 days
// before To. The service has checked their format and order.
func (a *analyzer) span(from, to string) (analysis.Day, analysis.Day) {
	t := a.ix.Today()
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
func (a *analyzer) segments(names []string) ([]analysis.Segment, error) {
	out := []analysis.Segment{{ID: api.AllUsers}}
	seen := map[string]bool{api.AllUsers: true}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		bm, err := a.engine.SegmentBitmap(n)
		if err != nil {
			return nil, err
		}
		out = append(out, analysis.Segment{ID: n, Users: bm})
	}
	return out, nil
}

// AnalyzeEvents implements bus.Analyzer.
func (a *analyzer) AnalyzeEvents(ctx context.Context, r *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	for _, ev := range r.Events {
		if _, err := a.eventName(ev); err != nil {
			return nil, err
		}
	}
	q := analysis.EventsQuery{Events: r.Events}
	q.From, q.To = a.span(r.From, r.To)
	days := int(q.To-q.From) + 1
	field := "events"
	if len(r.Segments) > 0 {
		field = "segments"
	}
	if err := bus.CheckAnalysisValues(field, (len(r.Segments)+1)*len(r.Events)*len(r.Measures)*days, fmt.Sprintf(
		"%d segments with all users × %d events × %d measures × %d days", len(r.Segments)+1, len(r.Events), len(r.Measures), days)); err != nil {
		return nil, err
	}
	segs, err := a.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q.Segments = segs
	for _, m := range r.Measures {
		pm, _ := api.ParseMeasure(m)
		q.Measures = append(q.Measures, pm)
	}
	return a.ix.EventsContext(ctx, q)
}

// AnalyzeFunnel implements bus.Analyzer.
func (a *analyzer) AnalyzeFunnel(ctx context.Context, r *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	segs, err := a.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q := analysis.FunnelQuery{Segments: segs}
	q.From, q.To = a.span(r.From, r.To)
	q.Window, _ = api.ParseWindow(r.Window)
	q.Mode, _ = analysis.ParseFunnelMode(r.Mode)
	for _, s := range r.Steps {
		name := s.Event
		if s.Predicate != "" {
			name = "@" + s.Predicate
		}
		if name, err = a.eventName(name); err != nil {
			return nil, err
		}
		q.Steps = append(q.Steps, analysis.Step{Event: name})
	}
	res, err := a.ix.FunnelContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &api.AnalysisFunnelReply{Steps: r.Steps, Window: r.Window, Mode: q.Mode.String(),
		From: q.From.String(), To: q.To.String(), Segments: res}, nil
}

// AnalyzeRetention implements bus.Analyzer.
func (a *analyzer) AnalyzeRetention(ctx context.Context, r *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	for _, ev := range []string{r.StartEvent, r.ReturnEvent} {
		if _, err := a.eventName(ev); err != nil {
			return nil, err
		}
	}
	q := analysis.RetentionQuery{StartEvent: r.StartEvent, ReturnEvent: r.ReturnEvent, Days: r.Days,
		Recurring: r.Mode == api.RetentionRecurring}
	q.From, q.To = a.span(r.From, r.To)
	cohorts := int(q.To-q.From) + 1
	field := "days"
	if len(r.Segments) > 0 {
		field = "segments"
	}
	if err := bus.CheckAnalysisValues(field, (len(r.Segments)+1)*cohorts*r.Days, fmt.Sprintf(
		"%d segments with all users × %d cohorts × %d days", len(r.Segments)+1, cohorts, r.Days)); err != nil {
		return nil, err
	}
	segs, err := a.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q.Segments = segs
	res, err := a.ix.RetentionContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &api.AnalysisRetentionReply{Mode: r.Mode, Days: r.Days, Segments: res}, nil
}

// AnalyzeTrend implements bus.Analyzer: segment sizes from the engine's
// daily history; the all-users baseline from the analysis index (users
// with an event on or before each day).
func (a *analyzer) AnalyzeTrend(ctx context.Context, r *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	from, to := a.span(r.From, r.To)
	loc := a.ix.Location()
	base := a.ix.Users(from, to)
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
		days, err := a.engine.History(name, time.UnixMilli(from.Start(loc)), time.UnixMilli(to.Start(loc)))
		if err != nil {
			return nil, err
		}
		ts := api.TrendSegment{Segment: name, Sizes: make([]uint64, len(base)),
			Entered: make([]uint64, len(base)), Left: make([]uint64, len(base)), HistoryStart: a.engine.HistoryStart(name)}
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
