package scatter

import (
	"context"
	"slices"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
)

// span resolves a request's dates once for every partition, as one
// engine's analyzer does (To defaults to today, From to 29 days before
// To, at most bus.MaxAnalysisDays), so that partitions asked around
// midnight still answer the same days.
func (s *Scatter) span(from, to string) (string, string) {
	t := analysis.DayIn(s.Now(), s.Location())
	if to != "" {
		t, _ = analysis.ParseDay(to) // the service checked it
	}
	f := t - 29
	if from != "" {
		f, _ = analysis.ParseDay(from)
	}
	if f > t {
		t = f
	}
	return f.String(), min(t, f+bus.MaxAnalysisDays-1).String()
}

// AnalyzeEvents implements bus.Analyzer: every value is the sum of the
// partitions' values. uniques, at_least:N (users, who are disjoint) and
// total (events) are exact integers; sum:PROP adds floating-point sums,
// so like one engine's sum (in arrival order) it is exact when the values
// and sums are integers or binary fractions below 2^53, and may otherwise
// differ from one engine's in the last bits.
func (s *Scatter) AnalyzeEvents(ctx context.Context, r *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	q := *r
	q.From, q.To = s.span(r.From, r.To)
	reps := make([]*api.AnalysisEventsReply, len(s.parts))
	err := s.each(ctx, func(ctx context.Context, i int, p Part) error {
		var err error
		reps[i], err = p.AnalyzeEvents(ctx, &q)
		return err
	})
	if err != nil || len(s.parts) == 1 {
		return reps[0], err
	}
	out := &api.AnalysisEventsReply{Days: reps[0].Days, Series: make([]api.EventSeries, len(reps[0].Series))}
	for i, se := range reps[0].Series {
		se.Values = slices.Clone(se.Values)
		out.Series[i] = se
	}
	for p, rep := range reps[1:] {
		if !slices.Equal(rep.Days, out.Days) || len(rep.Series) != len(out.Series) {
			return nil, s.partErr(p+1, unavailable("answered other days or series than partition 0; ask again"))
		}
		for i, se := range rep.Series {
			have := &out.Series[i]
			if se.Segment != have.Segment || se.Event != have.Event || se.Measure != have.Measure || len(se.Values) != len(have.Values) {
				return nil, s.partErr(p+1, unavailable("answered series %d for %s/%s/%s where partition 0 answered %s/%s/%s",
					i, se.Segment, se.Event, se.Measure, have.Segment, have.Event, have.Measure))
			}
			for d, v := range se.Values {
				have.Values[d] += v
			}
		}
	}
	return out, nil
}

// AnalyzeFunnel implements bus.Analyzer: the users reaching each step are
// the partitions' sums, and the conversions are computed from the sums as
// one engine computes them.
func (s *Scatter) AnalyzeFunnel(ctx context.Context, r *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	q := *r
	q.From, q.To = s.span(r.From, r.To)
	reps := make([]*api.AnalysisFunnelReply, len(s.parts))
	err := s.each(ctx, func(ctx context.Context, i int, p Part) error {
		var err error
		reps[i], err = p.AnalyzeFunnel(ctx, &q)
		return err
	})
	if err != nil || len(s.parts) == 1 {
		return reps[0], err
	}
	out := *reps[0]
	out.Segments = make([]api.FunnelSegment, len(reps[0].Segments))
	for i, fs := range reps[0].Segments {
		fs.Steps = slices.Clone(fs.Steps)
		out.Segments[i] = fs
	}
	for p, rep := range reps[1:] {
		if len(rep.Segments) != len(out.Segments) {
			return nil, s.partErr(p+1, unavailable("answered %d segments where partition 0 answered %d", len(rep.Segments), len(out.Segments)))
		}
		for i, fs := range rep.Segments {
			have := &out.Segments[i]
			if fs.Segment != have.Segment || len(fs.Steps) != len(have.Steps) {
				return nil, s.partErr(p+1, unavailable("answered segment %q with %d steps where partition 0 answered %q with %d",
					fs.Segment, len(fs.Steps), have.Segment, len(have.Steps)))
			}
			for k, st := range fs.Steps {
				have.Steps[k].Users += st.Users
			}
		}
	}
	for i := range out.Segments {
		conversions(out.Segments[i].Steps)
	}
	return &out, nil
}

// conversions sets each step's conversions from the users, as
// analysis.Index.Funnel does: over step 1's users and over the previous
// step's (0 when that is 0; step 1's step conversion is 1 when it has
// users).
func conversions(steps []api.FunnelStepCount) {
	for k := range steps {
		u := steps[k].Users
		steps[k].Conversion, steps[k].StepConversion = 0, 0
		if first := steps[0].Users; first > 0 {
			steps[k].Conversion = float64(u) / float64(first)
		}
		if k == 0 && u > 0 {
			steps[k].StepConversion = 1
		} else if k > 0 && steps[k-1].Users > 0 {
			steps[k].StepConversion = float64(u) / float64(steps[k-1].Users)
		}
	}
}

// AnalyzeRetention implements bus.Analyzer: each cohort's size and
// retained users are the partitions' sums (a user is in one partition, so
// in one partition's cohort of a day, first_time or recurring).
func (s *Scatter) AnalyzeRetention(ctx context.Context, r *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	q := *r
	q.From, q.To = s.span(r.From, r.To)
	reps := make([]*api.AnalysisRetentionReply, len(s.parts))
	err := s.each(ctx, func(ctx context.Context, i int, p Part) error {
		var err error
		reps[i], err = p.AnalyzeRetention(ctx, &q)
		return err
	})
	if err != nil || len(s.parts) == 1 {
		return reps[0], err
	}
	out := *reps[0]
	out.Segments = make([]api.RetentionSegment, len(reps[0].Segments))
	for i, rs := range reps[0].Segments {
		rs.Cohorts = slices.Clone(rs.Cohorts)
		for c := range rs.Cohorts {
			rs.Cohorts[c].Retained = slices.Clone(rs.Cohorts[c].Retained)
		}
		out.Segments[i] = rs
	}
	for p, rep := range reps[1:] {
		if len(rep.Segments) != len(out.Segments) {
			return nil, s.partErr(p+1, unavailable("answered %d segments where partition 0 answered %d", len(rep.Segments), len(out.Segments)))
		}
		for i, rs := range rep.Segments {
			have := &out.Segments[i]
			if rs.Segment != have.Segment {
				return nil, s.partErr(p+1, unavailable("answered segment %q where partition 0 answered %q", rs.Segment, have.Segment))
			}
			err := sameDays(len(have.Cohorts), len(rs.Cohorts), func(c int) bool {
				return rs.Cohorts[c].Day == have.Cohorts[c].Day && len(rs.Cohorts[c].Retained) == len(have.Cohorts[c].Retained)
			})
			if err != nil {
				return nil, s.partErr(p+1, err)
			}
			for c, co := range rs.Cohorts {
				hc := &have.Cohorts[c]
				hc.Size += co.Size
				for k, v := range co.Retained {
					hc.Retained[k] += v
				}
			}
		}
	}
	return &out, nil
}

// AnalyzeTrend implements bus.Analyzer: sizes, entries and exits per day
// are the partitions' sums, for all users as for segments; a segment's
// HistoryStart is the earliest any partition recorded.
func (s *Scatter) AnalyzeTrend(ctx context.Context, r *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	q := *r
	q.From, q.To = s.span(r.From, r.To)
	reps := make([]*api.AnalysisTrendReply, len(s.parts))
	err := s.each(ctx, func(ctx context.Context, i int, p Part) error {
		var err error
		reps[i], err = p.AnalyzeTrend(ctx, &q)
		return err
	})
	if err != nil || len(s.parts) == 1 {
		return reps[0], err
	}
	out := &api.AnalysisTrendReply{Days: reps[0].Days, Segments: make([]api.TrendSegment, len(reps[0].Segments))}
	for i, ts := range reps[0].Segments {
		ts.Sizes, ts.Entered, ts.Left = slices.Clone(ts.Sizes), slices.Clone(ts.Entered), slices.Clone(ts.Left)
		out.Segments[i] = ts
	}
	for p, rep := range reps[1:] {
		if err := sameDays(len(out.Days), len(rep.Days), func(d int) bool { return out.Days[d] == rep.Days[d] }); err != nil {
			return nil, s.partErr(p+1, err)
		}
		if len(rep.Segments) != len(out.Segments) {
			return nil, s.partErr(p+1, unavailable("answered %d segments where partition 0 answered %d", len(rep.Segments), len(out.Segments)))
		}
		for i, ts := range rep.Segments {
			have := &out.Segments[i]
			if ts.Segment != have.Segment || len(ts.Sizes) != len(have.Sizes) || len(ts.Entered) != len(have.Entered) || len(ts.Left) != len(have.Left) {
				return nil, s.partErr(p+1, unavailable("answered segment %q where partition 0 answered %q", ts.Segment, have.Segment))
			}
			for d := range ts.Sizes {
				have.Sizes[d] += ts.Sizes[d]
				have.Entered[d] += ts.Entered[d]
				have.Left[d] += ts.Left[d]
			}
			if h := ts.HistoryStart; h != "" && (have.HistoryStart == "" || h < have.HistoryStart) {
				have.HistoryStart = h
			}
		}
	}
	return out, nil
}
