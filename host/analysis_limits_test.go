package host

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// TestAnalysisUnknownEventsAndRanges: events segd never saw, an empty
// index and days outside the data answer zeros, never an error; the
// retention example of docs/analysis.md (start event "signup", which the
// demo never sends) answered 500 nil pointer dereference.
func TestAnalysisUnknownEventsAndRanges(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC))
	ts := startTestServer(t, t.TempDir(), clock, time.UTC)
	ctx := context.Background()
	c := ts.client
	for _, withData := range []bool{false, true} {
		if withData {
			ts.publish(t, rules.Batch{Events: []rules.Event{{User: "u1", Name: "visit", Time: clock.Now().Add(-time.Hour).UnixMilli()}}}, "one-visit")
		}
		for _, r := range []struct{ from, to string }{{"", ""}, {"1970-01-01", "1970-12-31"}, {"2999-01-01", "2999-12-31"}, {"2026-11-03", ""}, {"0001-01-01", "0001-12-31"}, {"9999-01-01", "9999-12-31"}, {"9999-12-31", ""}, {"", "0001-01-01"}} {
			where := fmt.Sprintf("data %v, %q..%q", withData, r.from, r.to)
			for _, mode := range []string{api.RetentionFirstTime, api.RetentionRecurring} {
				for _, ev := range [][2]string{{"signup", "visit"}, {"visit", "signup"}, {"signup", ""}} {
					rep, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: ev[0], ReturnEvent: ev[1], Mode: mode, From: r.from, To: r.to, Segments: []string{"young_men"}})
					if err != nil {
						t.Fatalf("%s: retention %s %v: %v", where, mode, ev, err)
					}
					for _, s := range rep.Segments {
						for _, co := range s.Cohorts {
							if ev[0] == "signup" && (co.Size != 0 || fmt.Sprint(co.Retained) != fmt.Sprint(make([]uint64, len(co.Retained)))) {
								t.Errorf("%s: retention of an unknown event: %+v", where, co)
							}
						}
					}
				}
			}
			if _, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"signup", "visit"}, Measures: []string{"uniques", "total", "sum:x", "at_least:2"}, From: r.from, To: r.to, Segments: []string{"young_men"}}); err != nil {
				t.Errorf("%s: events: %v", where, err)
			}
			for _, steps := range [][]api.FunnelStep{{{Event: "signup"}, {Event: "visit"}}, {{Event: "visit"}, {Event: "signup"}}, {{Event: "visit"}}} {
				if _, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: steps, From: r.from, To: r.to, Mode: "strict_order,strict_increase", Segments: []string{"young_men"}}); err != nil {
					t.Errorf("%s: funnel %v: %v", where, steps, err)
				}
			}
			if _, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{From: r.from, To: r.to, Segments: []string{"young_men"}}); err != nil {
				t.Errorf("%s: trend: %v", where, err)
			}
		}
	}
}

// TestAnalysisCaps: every list and span that sizes an analysis is capped
// with a 400 naming the field and the limit (200 events × 200 measures, a
// 3.8 KB request, allocated 126 MB on an empty index), and repeats are
// answered once.
func TestAnalysisCaps(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC))
	ts := startTestServer(t, t.TempDir(), clock, time.UTC)
	ctx := context.Background()
	c := ts.client
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	events := many(200, func(i int) string { return fmt.Sprintf("event_%d", i) })
	measures := many(200, func(i int) string { return fmt.Sprintf("sum:prop_%d", i) })
	segments := many(200, func(int) string { return "young_men" })
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"200 events x 200 measures", "events", func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: events, Measures: measures})
			return err
		}},
		{"200 measures", "measures", func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"a"}, Measures: measures})
			return err
		}},
		{"200 distinct segments", "segments", func() error {
			_, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{Segments: many(200, func(i int) string { return fmt.Sprintf("s%d", i) })})
			return err
		}},
		{"33 steps", "steps", func() error {
			steps := make([]api.FunnelStep, 33)
			for i := range steps {
				steps[i].Event = "a"
			}
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: steps})
			return err
		}},
		{"a window of 10 years", "window", func() error {
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "a"}}, Window: "3650d"})
			return err
		}},
		{"a long event name", "events", func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{string(make([]byte, 4096))}})
			return err
		}},
		{"a year of cohorts x 90 days x 20 segments", "segments", func() error {
			segs := many(20, func(i int) string { return fmt.Sprintf("s%d", i) })
			_, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "a", From: "2026-01-01", To: "2026-12-31", Days: 90, Segments: segs})
			return err
		}},
	} {
		err := tc.call()
		var ce *client.Error
		if !client.IsBadRequest(err) || !asClientError(err, &ce) || ce.Field != tc.field || !contains(ce.Description, "at most") {
			t.Errorf("%s: got %v, want a 400 naming %q and its limit", tc.name, err, tc.field)
		}
	}
	// Repeats count once: 200 times the same segment is one column.
	rep, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"a", "a"}, Measures: []string{"total", "total", "uniques"}, Segments: segments})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Series) != 2*1*2 {
		t.Errorf("%d series, want 4 (all users and young_men × a × total, uniques)", len(rep.Series))
	}
}
