package host

import (
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
)

// wireAnalysis gives the analysis index the engine's events. It keeps the
// days of the events stream's retention.
func (s *Server) wireAnalysis(cfg *engine.Config) {
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock.Now
	}
	days := int(s.cfg.Retention / (24 * time.Hour))
	ix := analysis.New(analysis.Config{Location: cfg.Location, Days: days, Now: now})
	cfg.Observer = ix
	s.analysis = ix
}

// AnalysisIndex returns the server's analysis index.
func (s *Server) AnalysisIndex() *analysis.Index { return s.analysis }

// analysisEndpoints are the segd.v1.analysis.* endpoints.
func (s *Server) analysisEndpoints() []bus.Endpoint {
	return bus.AnalysisEndpoints(&analyzer{ix: s.AnalysisIndex(), engine: s.engine})
}

// analyzer answers the analysis endpoints from the index and the engine.
type analyzer struct {
	ix     *analysis.Index
	engine *engine.Engine
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
func (a *analyzer) AnalyzeEvents(r *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	segs, err := a.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q := analysis.EventsQuery{Events: r.Events, Segments: segs}
	q.From, q.To = a.span(r.From, r.To)
	for _, m := range r.Measures {
		pm, _ := api.ParseMeasure(m)
		q.Measures = append(q.Measures, pm)
	}
	return a.ix.Events(q), nil
}

// AnalyzeFunnel implements bus.Analyzer.
func (a *analyzer) AnalyzeFunnel(r *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	segs, err := a.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q := analysis.FunnelQuery{Segments: segs}
	q.From, q.To = a.span(r.From, r.To)
	q.Window, _ = api.ParseWindow(r.Window)
	q.Mode, _ = analysis.ParseFunnelMode(r.Mode)
	for _, s := range r.Steps {
		q.Steps = append(q.Steps, analysis.Step{Event: s.Event})
	}
	return &api.AnalysisFunnelReply{Steps: r.Steps, Window: r.Window, Mode: q.Mode.String(),
		From: q.From.String(), To: q.To.String(), Segments: a.ix.Funnel(q)}, nil
}

// AnalyzeRetention implements bus.Analyzer.
func (a *analyzer) AnalyzeRetention(r *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	segs, err := a.segments(r.Segments)
	if err != nil {
		return nil, err
	}
	q := analysis.RetentionQuery{StartEvent: r.StartEvent, ReturnEvent: r.ReturnEvent, Days: r.Days,
		Recurring: r.Mode == api.RetentionRecurring, Segments: segs}
	q.From, q.To = a.span(r.From, r.To)
	return &api.AnalysisRetentionReply{Mode: r.Mode, Days: r.Days, Segments: a.ix.Retention(q)}, nil
}

// AnalyzeTrend implements bus.Analyzer: segment sizes from the engine's
// daily history; the all-users baseline from the analysis index (users
// with an event on or before each day).
func (a *analyzer) AnalyzeTrend(r *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
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
		days, err := a.engine.History(name, time.UnixMilli(from.Start(loc)), time.UnixMilli(to.Start(loc)))
		if err != nil {
			return nil, err
		}
		ts := api.TrendSegment{Segment: name, Sizes: make([]uint64, len(base)),
			Entered: make([]uint64, len(base)), Left: make([]uint64, len(base))}
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
