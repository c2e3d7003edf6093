package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Analysis endpoint subjects. Every analysis takes several segments and
// answers them side by side, always with the baseline AllUsers first.
const (
	SubjectAnalysisEvents    = Group + ".analysis.events"
	SubjectAnalysisFunnel    = Group + ".analysis.funnel"
	SubjectAnalysisRetention = Group + ".analysis.retention"
	SubjectAnalysisTrend     = Group + ".analysis.trend"
)

// AllUsers is the segment name of the baseline in analysis replies: every
// user. No segment id can collide with it (ids start with a letter).
const AllUsers = "*"

// Analysis measures of the events endpoint.
const (
	// MeasureUniques counts the users who did the event that day.
	MeasureUniques = "uniques"
	// MeasureTotal counts the events.
	MeasureTotal = "total"
	// MeasureSumPrefix followed by a property name sums that numeric
	// property over the events, e.g. "sum:amount".
	MeasureSumPrefix = "sum:"
	// MeasureAtLeastPrefix followed by N counts the users who did the
	// event at least N times that day, e.g. "at_least:3".
	MeasureAtLeastPrefix = "at_least:"
)

// Funnel modes: ClickHouse windowFunnel's default and its strict modes.
const (
	FunnelDefault             = "default"
	FunnelStrictOrder         = "strict_order"
	FunnelStrictDeduplication = "strict_deduplication"
	FunnelStrictIncrease      = "strict_increase"
)

// Retention modes.
const (
	// RetentionFirstTime puts a user in the cohort of the first day they
	// did the start event (within the days segd keeps).
	RetentionFirstTime = "first_time"
	// RetentionRecurring puts a user in the cohort of every day they did
	// the start event.
	RetentionRecurring = "recurring"
)

// AnalysisEventsRequest asks for daily series of events. From and To are
// calendar dates (YYYY-MM-DD) in segd's time zone, inclusive; To defaults
// to today, From to 29 days before To. Measures default to ["uniques"].
// Events, Measures and Segments count each name once; the service caps
// them (20, 10 and 20 distinct), the span (366 days) and the reply
// (100,000 values), with a 400 naming the field (see docs/api.md, Limits).
type AnalysisEventsRequest struct {
	Events   []string `json:"events"`
	Segments []string `json:"segments,omitempty"`
	From     string   `json:"from,omitempty"`
	To       string   `json:"to,omitempty"`
	Measures []string `json:"measures,omitempty"`
}

// AnalysisEventsReply holds one series per (segment, event, measure),
// segments in request order after AllUsers; Values[i] is Days[i]'s value.
type AnalysisEventsReply struct {
	Days   []string      `json:"days"`
	Series []EventSeries `json:"series"`
}

// EventSeries is one daily series.
type EventSeries struct {
	Segment string    `json:"segment"`
	Event   string    `json:"event"`
	Measure string    `json:"measure"`
	Values  []float64 `json:"values"`
}

// FunnelStep is one step of a funnel: an event name, or a named predicate
// of the rule files (`predicates:`); exactly one is set. A named predicate
// can also be written as the event "@NAME", here and wherever analysis
// takes an event name.
type FunnelStep struct {
	Event     string `json:"event,omitempty"`
	Predicate string `json:"predicate,omitempty"`
}

// AnalysisFunnelRequest asks for a funnel (at most 32 steps, a window of
// at most 366 days, 20 segments). A user enters at any
// occurrence of step 1 between From and To (calendar dates, inclusive);
// step k counts when it follows step k-1 no later than Window after that
// entry. Window is a duration such as "7d", "36h" or "90m" (default "7d");
// Mode is FunnelDefault or a strict mode. From and To default as for
// events.
type AnalysisFunnelRequest struct {
	Steps    []FunnelStep `json:"steps"`
	Window   string       `json:"window,omitempty"`
	From     string       `json:"from,omitempty"`
	To       string       `json:"to,omitempty"`
	Segments []string     `json:"segments,omitempty"`
	Mode     string       `json:"mode,omitempty"`
}

// AnalysisFunnelReply lists per segment how many users reached each step.
type AnalysisFunnelReply struct {
	Steps    []FunnelStep    `json:"steps"`
	Window   string          `json:"window"`
	Mode     string          `json:"mode"`
	From     string          `json:"from"`
	To       string          `json:"to"`
	Segments []FunnelSegment `json:"segments"`
}

// FunnelSegment is one segment's funnel.
type FunnelSegment struct {
	Segment string            `json:"segment"`
	Steps   []FunnelStepCount `json:"steps"`
}

// FunnelStepCount is how many users reached a step (at least: a user who
// reached step 3 counts in steps 1, 2 and 3). Conversion is Users over step
// 1's, StepConversion over the previous step's (0 when that is 0).
type FunnelStepCount struct {
	Users          uint64  `json:"users"`
	Conversion     float64 `json:"conversion"`
	StepConversion float64 `json:"step_conversion"`
}

// AnalysisRetentionRequest asks for a retention table: a cohort per
// calendar day from From to To (of users who did StartEvent, by Mode), and
// how many of them did ReturnEvent on each of the Days calendar days after
// (default 7, at most 90). ReturnEvent defaults to StartEvent, Mode to
// first_time.
type AnalysisRetentionRequest struct {
	StartEvent  string   `json:"start_event"`
	ReturnEvent string   `json:"return_event,omitempty"`
	From        string   `json:"from,omitempty"`
	To          string   `json:"to,omitempty"`
	Days        int      `json:"days,omitempty"`
	Mode        string   `json:"mode,omitempty"`
	Segments    []string `json:"segments,omitempty"`
}

// AnalysisRetentionReply holds one table per segment.
type AnalysisRetentionReply struct {
	Mode     string             `json:"mode"`
	Days     int                `json:"days"`
	Segments []RetentionSegment `json:"segments"`
}

// RetentionSegment is one segment's cohorts, oldest first.
type RetentionSegment struct {
	Segment string   `json:"segment"`
	Cohorts []Cohort `json:"cohorts"`
}

// Cohort is the users of one start day: Size of them, and Retained[k-1]
// of them did the return event on day k after. Retained stops at today:
// the table is a triangle.
type Cohort struct {
	Day      string   `json:"day"`
	Size     uint64   `json:"size"`
	Retained []uint64 `json:"retained"`
}

// AnalysisTrendRequest asks for segment sizes per day. From and To default
// as for events.
type AnalysisTrendRequest struct {
	Segments []string `json:"segments,omitempty"`
	From     string   `json:"from,omitempty"`
	To       string   `json:"to,omitempty"`
}

// AnalysisTrendReply holds one series per segment, AllUsers first, over
// Days (capped at today).
type AnalysisTrendReply struct {
	Days     []string       `json:"days"`
	Segments []TrendSegment `json:"segments"`
}

// TrendSegment is a segment's size at the end of each day and the users
// who entered and left during it. For AllUsers, Sizes counts the users
// with an event on or before the day, Entered those whose first event was
// that day.
type TrendSegment struct {
	Segment string   `json:"segment"`
	Sizes   []uint64 `json:"sizes"`
	Entered []uint64 `json:"entered"`
	Left    []uint64 `json:"left"`
	// HistoryStart is the first day segd recorded for a segment (see
	// SegmentHistoryReply.HistoryStart); absent for all users and for a
	// segment with nothing recorded yet.
	HistoryStart string `json:"history_start,omitempty"`
}

// Measure is a parsed events measure.
type Measure struct {
	// Kind is MeasureUniques, MeasureTotal, "sum" or "at_least".
	Kind string
	// Prop is a sum's property, N an at_least's threshold.
	Prop string
	N    uint64
	// Name is the measure as written.
	Name string
}

// Measure kinds of Measure.Kind besides MeasureUniques and MeasureTotal.
const (
	MeasureKindSum     = "sum"
	MeasureKindAtLeast = "at_least"
)

// ParseMeasure parses "uniques", "total", "sum:PROP" or "at_least:N".
func ParseMeasure(s string) (Measure, error) {
	switch {
	case s == MeasureUniques, s == MeasureTotal:
		return Measure{Kind: s, Name: s}, nil
	case strings.HasPrefix(s, MeasureSumPrefix):
		p := strings.TrimPrefix(s, MeasureSumPrefix)
		if p == "" {
			return Measure{}, fmt.Errorf("measure %q names no property; want e.g. sum:amount", s)
		}
		return Measure{Kind: MeasureKindSum, Prop: p, Name: s}, nil
	case strings.HasPrefix(s, MeasureAtLeastPrefix):
		n, err := strconv.ParseUint(strings.TrimPrefix(s, MeasureAtLeastPrefix), 10, 32)
		if err != nil || n == 0 {
			return Measure{}, fmt.Errorf("measure %q: want a positive count, e.g. at_least:3", s)
		}
		return Measure{Kind: MeasureKindAtLeast, N: n, Name: s}, nil
	}
	return Measure{}, fmt.Errorf("unknown measure %q; want uniques, total, sum:PROP or at_least:N", s)
}

// ParseDate parses a calendar date written YYYY-MM-DD.
func ParseDate(s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date; want YYYY-MM-DD, e.g. 2026-11-28", s)
	}
	return t, nil
}

// ParseWindow parses a funnel window: a whole number of days ("7d") or a
// Go duration ("36h", "90m", "1h30m"); it must be positive.
func ParseWindow(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("window %q: want e.g. 7d, 36h or 90m", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("window %q: want e.g. 7d, 36h or 90m", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("window %q must be positive", s)
	}
	return d, nil
}

// ParseFunnelMode parses FunnelDefault (or "") or strict modes joined by
// commas, e.g. "strict_order,strict_increase", into the list of strict
// modes.
func ParseFunnelMode(s string) ([]string, error) {
	if s == "" || s == FunnelDefault {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case FunnelStrictOrder, FunnelStrictDeduplication, FunnelStrictIncrease:
			out = append(out, p)
		default:
			return nil, fmt.Errorf("unknown funnel mode %q; want default, or strict_order, strict_deduplication, strict_increase joined by commas", p)
		}
	}
	return out, nil
}
