package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/segd/segd/bus/api"
)

// Analyzer answers the analysis endpoints (host implements it). Requests
// reach it decoded and validated: dates are YYYY-MM-DD with From <= To,
// measures, windows and modes parse, steps and segment names are not
// empty, and no list is longer than its limit (the Max* constants);
// events, measures and segments are each listed once. ctx carries the
// request's deadline: a long analysis stops at it and returns ctx's
// error. An unknown segment is an error wrapping ErrNotFound; an event
// never seen counts zero.
type Analyzer interface {
	AnalyzeEvents(context.Context, *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error)
	AnalyzeFunnel(context.Context, *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error)
	AnalyzeRetention(context.Context, *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error)
	AnalyzeTrend(context.Context, *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error)
}

// Analysis limits: each bounds a request field that sizes the work and
// the reply; past one, the request is a 400 naming the field and the
// limit.
const (
	// MaxAnalysisDays bounds the span of an analysis's From..To.
	MaxAnalysisDays = 366
	// MaxRetentionDays bounds a retention table's days.
	MaxRetentionDays = 90
	// MaxAnalysisEvents bounds the distinct events of analysis.events.
	MaxAnalysisEvents = 20
	// MaxAnalysisMeasures bounds the distinct measures of analysis.events.
	MaxAnalysisMeasures = 10
	// MaxAnalysisSegments bounds the distinct segments of an analysis,
	// besides the all-users baseline.
	MaxAnalysisSegments = 20
	// MaxFunnelSteps bounds a funnel's steps.
	MaxFunnelSteps = 32
	// MaxFunnelWindow bounds a funnel's window.
	MaxFunnelWindow = MaxAnalysisDays * 24 * time.Hour
	// MaxAnalysisName bounds an event, predicate, segment or property
	// name, in bytes.
	MaxAnalysisName = 256
	// MaxAnalysisValues bounds the numbers one reply holds: series ×
	// days for analysis.events, segments × cohorts × days for retention.
	// Past it the reply would not fit in a message anyway.
	MaxAnalysisValues = 100_000
)

// CheckAnalysisValues is the 400 of an analysis whose reply would hold
// more than MaxAnalysisValues numbers: product describes how they
// multiply, field names the request field to shrink.
func CheckAnalysisValues(field string, values int, product string) error {
	if values <= MaxAnalysisValues {
		return nil
	}
	return &Error{Code: api.CodeBadRequest, Field: field, Err: fmt.Errorf(
		"the reply would hold %d values (%s); at most %d: ask for fewer segments, events, measures or days", values, product, MaxAnalysisValues)}
}

// AnalysisEndpoints returns the segd.v1.analysis.* endpoints served by a.
// They are Slow: an analysis can take a second at a million users, and
// must not hold up membership lookups.
func AnalysisEndpoints(a Analyzer) []Endpoint {
	return []Endpoint{
		{
			Name: "analysis_events", Subject: "analysis.events",
			Slow:        true,
			Description: "Daily series of events per event, measure and segment, side by side with all users (*).",
			Request:     `{"events":["checkout"],"segments":["vip"],"from":"2026-11-01","to":"2026-11-28","measures":["uniques","total","sum:amount"]}`,
			Reply:       `{"days":["2026-11-01"],"series":[{"segment":"*","event":"checkout","measure":"uniques","values":[812]}]}`,
			ParseContext: func(data []byte) (Work, *api.ErrorDetail) {
				var r api.AnalysisEventsRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if len(r.Events) == 0 {
					return nil, badField("events", `"events" is required: the event names to count`)
				}
				var bad *api.ErrorDetail
				if r.Events, bad = checkNames("events", r.Events, MaxAnalysisEvents); bad != nil {
					return nil, bad
				}
				if len(r.Measures) == 0 {
					r.Measures = []string{api.MeasureUniques}
				}
				if r.Measures, bad = checkNames("measures", r.Measures, MaxAnalysisMeasures); bad != nil {
					return nil, bad
				}
				for _, m := range r.Measures {
					if _, err := api.ParseMeasure(m); err != nil {
						return nil, badField("measures", err.Error())
					}
				}
				if r.Segments, bad = checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.AnalyzeEvents(ctx, &r) }, nil
			},
		},
		{
			Name: "analysis_funnel", Subject: "analysis.funnel",
			Slow:        true,
			Description: "Users reaching each funnel step (ClickHouse windowFunnel semantics) per segment, with all users (*).",
			Request:     `{"steps":[{"event":"view"},{"event":"cart"},{"event":"pay"}],"window":"7d","from":"2026-11-01","to":"2026-11-28","segments":["vip"]}`,
			Reply:       `{"steps":[{"event":"view"},{"event":"cart"},{"event":"pay"}],"window":"7d","mode":"default","from":"2026-11-01","to":"2026-11-28","segments":[{"segment":"*","steps":[{"users":900,"conversion":1,"step_conversion":1},{"users":300,"conversion":0.333,"step_conversion":0.333},{"users":120,"conversion":0.133,"step_conversion":0.4}]}]}`,
			ParseContext: func(data []byte) (Work, *api.ErrorDetail) {
				var r api.AnalysisFunnelRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if len(r.Steps) == 0 {
					return nil, badField("steps", `"steps" is required, e.g. [{"event":"view"},{"event":"pay"}]`)
				}
				// Steps are not de-duplicated: [a, a] is a funnel (a twice).
				if len(r.Steps) > MaxFunnelSteps {
					return nil, badField("steps", fmt.Sprintf("a funnel has at most %d steps, not %d", MaxFunnelSteps, len(r.Steps)))
				}
				for i, s := range r.Steps {
					if (s.Event == "") == (s.Predicate == "") {
						return nil, badField("steps", fmt.Sprintf(`step %d must name an event or a predicate; want {"event":"NAME"} or {"predicate":"NAME"}`, i+1))
					}
					if len(s.Event) > MaxAnalysisName || len(s.Predicate) > MaxAnalysisName {
						return nil, badField("steps", fmt.Sprintf("step %d: a name has at most %d bytes", i+1, MaxAnalysisName))
					}
				}
				if r.Window == "" {
					r.Window = "7d"
				}
				w, err := api.ParseWindow(r.Window)
				if err != nil {
					return nil, badField("window", err.Error())
				}
				if w > MaxFunnelWindow {
					return nil, badField("window", fmt.Sprintf("window %q is longer than %d days; at most %dd", r.Window, MaxAnalysisDays, MaxAnalysisDays))
				}
				if _, err := api.ParseFunnelMode(r.Mode); err != nil {
					return nil, badField("mode", err.Error())
				}
				var bad *api.ErrorDetail
				if r.Segments, bad = checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.AnalyzeFunnel(ctx, &r) }, nil
			},
		},
		{
			Name: "analysis_retention", Subject: "analysis.retention",
			Slow:        true,
			Description: "Retention cohorts per calendar day (first_time or recurring) per segment, with all users (*).",
			Request:     `{"start_event":"signup","return_event":"visit","from":"2026-11-01","to":"2026-11-07","days":7,"mode":"first_time","segments":["vip"]}`,
			Reply:       `{"mode":"first_time","days":7,"segments":[{"segment":"*","cohorts":[{"day":"2026-11-01","size":120,"retained":[60,41,38,30,29,25,22]}]}]}`,
			ParseContext: func(data []byte) (Work, *api.ErrorDetail) {
				var r api.AnalysisRetentionRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if r.StartEvent == "" {
					return nil, badField("start_event", `"start_event" is required: the event that puts users in a cohort`)
				}
				for _, f := range []struct{ field, name string }{{"start_event", r.StartEvent}, {"return_event", r.ReturnEvent}} {
					if len(f.name) > MaxAnalysisName {
						return nil, badField(f.field, fmt.Sprintf("%q has %d bytes; at most %d", f.field, len(f.name), MaxAnalysisName))
					}
				}
				if r.ReturnEvent == "" {
					r.ReturnEvent = r.StartEvent
				}
				if r.Days == 0 {
					r.Days = 7
				}
				if r.Days < 1 || r.Days > MaxRetentionDays {
					return nil, badField("days", fmt.Sprintf(`"days" must be between 1 and %d, not %d`, MaxRetentionDays, r.Days))
				}
				switch r.Mode {
				case "":
					r.Mode = api.RetentionFirstTime
				case api.RetentionFirstTime, api.RetentionRecurring:
				default:
					return nil, badField("mode", fmt.Sprintf("unknown retention mode %q; want first_time or recurring", r.Mode))
				}
				var bad *api.ErrorDetail
				if r.Segments, bad = checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.AnalyzeRetention(ctx, &r) }, nil
			},
		},
		{
			Name: "analysis_trend", Subject: "analysis.trend",
			Slow:        true,
			Description: "Segment sizes, entries and exits per day, with all users (*).",
			Request:     `{"segments":["vip"],"from":"2026-11-01","to":"2026-11-28"}`,
			Reply:       `{"days":["2026-11-01"],"segments":[{"segment":"*","sizes":[5000],"entered":[40],"left":[0]},{"segment":"vip","sizes":[575],"entered":[3],"left":[1]}]}`,
			ParseContext: func(data []byte) (Work, *api.ErrorDetail) {
				var r api.AnalysisTrendRequest
				if bad := decodeRequest(data, &r, true); bad != nil {
					return nil, bad
				}
				var bad *api.ErrorDetail
				if r.Segments, bad = checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.AnalyzeTrend(ctx, &r) }, nil
			},
		},
	}
}

// checkRange validates the dates and segment names every analysis takes,
// and returns the segments with repeats dropped.
func checkRange(from, to string, segments []string) ([]string, *api.ErrorDetail) {
	var f, t int64
	if from != "" {
		d, err := api.ParseDate(from)
		if err != nil {
			return nil, badField("from", `"from": `+err.Error())
		}
		f = d.Unix() / 86400
	}
	if to != "" {
		d, err := api.ParseDate(to)
		if err != nil {
			return nil, badField("to", `"to": `+err.Error())
		}
		t = d.Unix() / 86400
	}
	if from != "" && to != "" {
		if f > t {
			return nil, badField("from", fmt.Sprintf(`"from" (%s) is after "to" (%s)`, from, to))
		}
		if t-f+1 > MaxAnalysisDays {
			return nil, badField("from", fmt.Sprintf(`"from".."to" spans %d days; at most %d`, t-f+1, MaxAnalysisDays))
		}
	}
	return checkNames("segments", segments, MaxAnalysisSegments)
}

// checkNames drops repeats from a list of names and checks it: no name
// empty or longer than MaxAnalysisName, at most max distinct names.
func checkNames(field string, names []string, max int) ([]string, *api.ErrorDetail) {
	if len(names) == 0 {
		return names, nil
	}
	seen := make(map[string]bool, min(len(names), max+1))
	out := make([]string, 0, min(len(names), max))
	for i, n := range names {
		switch {
		case n == "":
			return nil, badField(field, fmt.Sprintf("%q[%d] is empty", field, i))
		case len(n) > MaxAnalysisName:
			return nil, badField(field, fmt.Sprintf("%q[%d] has %d bytes; a name has at most %d", field, i, len(n), MaxAnalysisName))
		case seen[n]:
			continue
		}
		if len(out) == max {
			return nil, badField(field, fmt.Sprintf("%q lists more than %d distinct names; at most %d", field, max, max))
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}
