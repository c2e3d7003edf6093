package host

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/analysisref"
	"github.com/segd/segd/rules"
)

// TestAnalysisOverNATS publishes events through JetStream across New
// York's change from daylight saving time, and holds every analysis
// endpoint's answers over NATS to the naive reference over the raw events.
func TestAnalysisOverNATS(t *testing.T) {
	t.Parallel()
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 3, 10, 0, 0, 0, loc))
	ts := startTestServer(t, t.TempDir(), clock, loc)
	rng := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	var events []rules.Event
	for i := range 8 {
		b := randomBatch(rng, clock.Now())
		for j := range b.Events {
			if rng.IntN(4) == 0 {
				b.Events[j].Props = map[string]any{"amount": float64(rng.IntN(40)) * 0.5}
			}
		}
		ts.publish(t, b, fmt.Sprintf("analysis-%d", i))
		events = append(events, b.Events...)
	}
	e := ts.srv.Engine()
	ids := make([]uint32, len(events))
	for i, ev := range events {
		id, ok := e.UserID(ev.User)
		if !ok {
			t.Fatalf("user %s unknown to the engine", ev.User)
		}
		ids[i] = id
	}
	ref := &analysisref.Raw{Events: events, IDs: ids, Loc: loc, Now: clock.Now(), Days: 90}
	segNames := []string{"checkout_3x_7d", "young_men"}
	ins := map[string]func(uint32) bool{api.AllUsers: func(uint32) bool { return true }}
	for _, s := range segNames {
		bm, err := e.SegmentBitmap(s)
		if err != nil {
			t.Fatal(err)
		}
		ins[s] = bm.Contains
	}
	ctx := context.Background()
	c := ts.client
	from, to := "2026-10-29", "2026-11-03"

	ev, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"checkout", "pay", "page_view"},
		Segments: segNames, From: from, To: to, Measures: []string{"uniques", "total", "sum:amount", "at_least:2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Series) != 3*3*4 || ev.Series[0].Segment != api.AllUsers {
		t.Fatalf("events: %d series, first %q", len(ev.Series), ev.Series[0].Segment)
	}
	for _, s := range ev.Series {
		if want := ref.EventSeries(ins[s.Segment], s.Event, s.Measure, from, to); !slices.Equal(s.Values, want) {
			t.Fatalf("events %s %s %s: got %v, want %v", s.Segment, s.Event, s.Measure, s.Values, want)
		}
	}

	steps := []string{"page_view", "checkout", "pay"}
	for _, mode := range []string{"", "strict_order", "strict_deduplication", "strict_increase", "strict_order,strict_increase"} {
		fr, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: steps[0]}, {Event: steps[1]}, {Event: steps[2]}},
			Window: "1d", From: from, To: to, Segments: segNames, Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range fr.Segments {
			want := ref.Funnel(ins[s.Segment], steps, 24*time.Hour, strings.Contains(mode, "strict_order"),
				strings.Contains(mode, "dedup"), strings.Contains(mode, "increase"), from, to)
			for k := range want {
				if s.Steps[k].Users != want[k] {
					t.Fatalf("funnel mode %q segment %s: got %+v, want %v", mode, s.Segment, s.Steps, want)
				}
			}
		}
	}

	for _, mode := range []string{api.RetentionFirstTime, api.RetentionRecurring} {
		rr, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "page_view", ReturnEvent: "checkout",
			From: from, To: to, Days: 4, Mode: mode, Segments: segNames})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rr.Segments {
			sizes, retained, days := ref.Retention(ins[s.Segment], "page_view", "checkout", from, to, 4, mode == api.RetentionRecurring)
			if len(s.Cohorts) != len(sizes) {
				t.Fatalf("retention %s: %d cohorts, want %d", mode, len(s.Cohorts), len(sizes))
			}
			for i, co := range s.Cohorts {
				if co.Day != days[i] || co.Size != sizes[i] || !slices.Equal(co.Retained, retained[i]) {
					t.Fatalf("retention %s %s: got %+v, want %s %d %v", mode, s.Segment, co, days[i], sizes[i], retained[i])
				}
			}
		}
	}

	tr, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{Segments: segNames, From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if want := analysisref.Dates(from, to); !slices.Equal(tr.Days, want) || len(tr.Segments) != 3 {
		t.Fatalf("trend days %v segments %d", tr.Days, len(tr.Segments))
	}
	users := map[string]bool{}
	for _, ev := range events {
		users[ev.User] = true
	}
	if got := tr.Segments[0].Sizes[len(tr.Days)-1]; got != uint64(len(users)) {
		t.Fatalf("trend: all users today %d, want %d", got, len(users))
	}
	for i, name := range segNames {
		h, err := e.History(name, clock.Now(), clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.Segments[i+1].Sizes[len(tr.Days)-1]; got != h[0].Size {
			t.Fatalf("trend %s today %d, history %d", name, got, h[0].Size)
		}
	}
}

// TestAnalysisBadRequests checks that every malformed request is a 400
// naming its field and an unknown segment a 404.
func TestAnalysisBadRequests(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC))
	ts := startTestServer(t, t.TempDir(), clock, time.UTC)
	ctx := context.Background()
	c := ts.client
	step := []api.FunnelStep{{Event: "a"}}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"bad from", "from", func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"a"}, From: "2026-13-01"})
			return err
		}},
		{"from after to", "from", func() error {
			_, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{From: "2026-11-05", To: "2026-11-01"})
			return err
		}},
		{"bad to", "to", func() error {
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: step, To: "yesterday"})
			return err
		}},
		{"unknown measure", "measures", func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"a"}, Measures: []string{"median"}})
			return err
		}},
		{"no events", "events", func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{})
			return err
		}},
		{"empty steps", "steps", func() error {
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{})
			return err
		}},
		{"bad window", "window", func() error {
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: step, Window: "7 days"})
			return err
		}},
		{"bad funnel mode", "mode", func() error {
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: step, Mode: "strict"})
			return err
		}},
		{"no start event", "start_event", func() error {
			_, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{})
			return err
		}},
		{"too many days", "days", func() error {
			_, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "a", Days: 400})
			return err
		}},
		{"bad retention mode", "mode", func() error {
			_, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "a", Mode: "weekly"})
			return err
		}},
	} {
		err := tc.call()
		var ce *client.Error
		if !client.IsBadRequest(err) || !asClientError(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: got %v, want a 400 naming %q", tc.name, err, tc.field)
		}
	}
	for _, call := range []func() error{
		func() error {
			_, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"a"}, Segments: []string{"nope"}})
			return err
		},
		func() error {
			_, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: step, Segments: []string{"nope"}})
			return err
		},
		func() error {
			_, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "a", Segments: []string{"nope"}})
			return err
		},
		func() error {
			_, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{Segments: []string{"nope"}})
			return err
		},
	} {
		if err := call(); !client.IsNotFound(err) {
			t.Errorf("unknown segment: got %v, want a 404", err)
		}
	}
}
