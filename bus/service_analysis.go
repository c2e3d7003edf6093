package bus

import (
	"fmt"

	"github.com/segd/segd/bus/api"
)

// Analyzer answers the analysis endpoints (host implements it). Requests
// reach it decoded and validated: dates are YYYY-MM-DD with From <= To,
// measures, windows and modes parse, steps and segment names are not
// empty. An unknown segment is an error wrapping ErrNotFound.
type Analyzer interface {
	AnalyzeEvents(*api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error)
	AnalyzeFunnel(*api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error)
	AnalyzeRetention(*api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error)
	AnalyzeTrend(*api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error)
}

// MaxAnalysisDays bounds the span of an analysis's From..To.
const MaxAnalysisDays = 366

// MaxRetentionDays bounds a retention table's days.
const MaxRetentionDays = 90

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
			Parse: func(data []byte) (func() (any, error), *api.ErrorDetail) {
				var r api.AnalysisEventsRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if len(r.Events) == 0 {
					return nil, badField("events", `"events" is required: the event names to count`)
				}
				for _, e := range r.Events {
					if e == "" {
						return nil, badField("events", `"events" has an empty name`)
					}
				}
				if len(r.Measures) == 0 {
					r.Measures = []string{api.MeasureUniques}
				}
				for _, m := range r.Measures {
					if _, err := api.ParseMeasure(m); err != nil {
						return nil, badField("measures", err.Error())
					}
				}
				if bad := checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func() (any, error) { return a.AnalyzeEvents(&r) }, nil
			},
		},
		{
			Name: "analysis_funnel", Subject: "analysis.funnel",
			Slow:        true,
			Description: "Users reaching each funnel step (ClickHouse windowFunnel semantics) per segment, with all users (*).",
			Request:     `{"steps":[{"event":"view"},{"event":"cart"},{"event":"pay"}],"window":"7d","from":"2026-11-01","to":"2026-11-28","segments":["vip"]}`,
			Reply:       `{"steps":[{"event":"view"},{"event":"cart"},{"event":"pay"}],"window":"7d","mode":"default","from":"2026-11-01","to":"2026-11-28","segments":[{"segment":"*","steps":[{"users":900,"conversion":1,"step_conversion":1},{"users":300,"conversion":0.333,"step_conversion":0.333},{"users":120,"conversion":0.133,"step_conversion":0.4}]}]}`,
			Parse: func(data []byte) (func() (any, error), *api.ErrorDetail) {
				var r api.AnalysisFunnelRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if len(r.Steps) == 0 {
					return nil, badField("steps", `"steps" is required, e.g. [{"event":"view"},{"event":"pay"}]`)
				}
				if len(r.Steps) > 32 {
					return nil, badField("steps", fmt.Sprintf("a funnel has at most 32 steps, not %d", len(r.Steps)))
				}
				for i, s := range r.Steps {
					if (s.Event == "") == (s.Predicate == "") {
						return nil, badField("steps", fmt.Sprintf(`step %d must name an event or a predicate; want {"event":"NAME"} or {"predicate":"NAME"}`, i+1))
					}
				}
				if r.Window == "" {
					r.Window = "7d"
				}
				if _, err := api.ParseWindow(r.Window); err != nil {
					return nil, badField("window", err.Error())
				}
				if _, err := api.ParseFunnelMode(r.Mode); err != nil {
					return nil, badField("mode", err.Error())
				}
				if bad := checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func() (any, error) { return a.AnalyzeFunnel(&r) }, nil
			},
		},
		{
			Name: "analysis_retention", Subject: "analysis.retention",
			Slow:        true,
			Description: "Retention cohorts per calendar day (first_time or recurring) per segment, with all users (*).",
			Request:     `{"start_event":"signup","return_event":"visit","from":"2026-11-01","to":"2026-11-07","days":7,"mode":"first_time","segments":["vip"]}`,
			Reply:       `{"mode":"first_time","days":7,"segments":[{"segment":"*","cohorts":[{"day":"2026-11-01","size":120,"retained":[60,41,38,30,29,25,22]}]}]}`,
			Parse: func(data []byte) (func() (any, error), *api.ErrorDetail) {
				var r api.AnalysisRetentionRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if r.StartEvent == "" {
					return nil, badField("start_event", `"start_event" is required: the event that puts users in a cohort`)
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
				if bad := checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func() (any, error) { return a.AnalyzeRetention(&r) }, nil
			},
		},
		{
			Name: "analysis_trend", Subject: "analysis.trend",
			Slow:        true,
			Description: "Segment sizes, entries and exits per day, with all users (*).",
			Request:     `{"segments":["vip"],"from":"2026-11-01","to":"2026-11-28"}`,
			Reply:       `{"days":["2026-11-01"],"segments":[{"segment":"*","sizes":[5000],"entered":[40],"left":[0]},{"segment":"vip","sizes":[575],"entered":[3],"left":[1]}]}`,
			Parse: func(data []byte) (func() (any, error), *api.ErrorDetail) {
				var r api.AnalysisTrendRequest
				if bad := decodeRequest(data, &r, true); bad != nil {
					return nil, bad
				}
				if bad := checkRange(r.From, r.To, r.Segments); bad != nil {
					return nil, bad
				}
				return func() (any, error) { return a.AnalyzeTrend(&r) }, nil
			},
		},
	}
}

// checkRange validates the dates and segment names every analysis takes.
func checkRange(from, to string, segments []string) *api.ErrorDetail {
	var f, t int64
	if from != "" {
		d, err := api.ParseDate(from)
		if err != nil {
			return badField("from", `"from": `+err.Error())
		}
		f = d.Unix() / 86400
	}
	if to != "" {
		d, err := api.ParseDate(to)
		if err != nil {
			return badField("to", `"to": `+err.Error())
		}
		t = d.Unix() / 86400
	}
	if from != "" && to != "" {
		if f > t {
			return badField("from", fmt.Sprintf(`"from" (%s) is after "to" (%s)`, from, to))
		}
		if t-f+1 > MaxAnalysisDays {
			return badField("from", fmt.Sprintf(`"from".."to" spans %d days; at most %d`, t-f+1, MaxAnalysisDays))
		}
	}
	for _, s := range segments {
		if s == "" {
			return badField("segments", `"segments" has an empty name`)
		}
	}
	return nil
}
