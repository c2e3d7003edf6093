package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// Named predicates of the rule files are funnel steps and event series in
// analysis, indexed like events.
func TestNamedPredicatesInAnalysis(t *testing.T) {
	t.Parallel()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`
predicates:
  - {id: big_checkout, event: checkout, where: "(props.amount ?? 0) >= 500"}
segments:
  - {id: viewers, did: {event: page_view, last: 7d}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ts := startServer(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(now), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	at := func(m int) int64 { return now.Add(time.Duration(m-60) * time.Minute).UnixMilli() }
	ts.publish(t, rules.Batch{Events: []rules.Event{
		{User: "u1", Name: "page_view", Time: at(0)},
		{User: "u1", Name: "checkout", Time: at(5), Props: map[string]any{"amount": 600.0}},
		{User: "u2", Name: "page_view", Time: at(0)},
		{User: "u2", Name: "checkout", Time: at(5), Props: map[string]any{"amount": 100.0}},
		{User: "u3", Name: "checkout", Time: at(5), Props: map[string]any{"amount": 700.0}},
	}}, "p1")
	ctx := context.Background()
	day := now.Format(time.DateOnly)

	fr, err := ts.client.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{
		Steps: []api.FunnelStep{{Event: "page_view"}, {Predicate: "big_checkout"}}, From: day, To: day})
	if err != nil {
		t.Fatal(err)
	}
	if all := fr.Segments[0].Steps; all[0].Users != 2 || all[1].Users != 1 {
		t.Fatalf("funnel = %+v, want 2 then 1", fr.Segments[0])
	}
	ev, err := ts.client.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"@big_checkout"}, From: day, To: day,
		Measures: []string{api.MeasureUniques}})
	if err != nil {
		t.Fatal(err)
	}
	if v := ev.Series[0].Values; len(v) != 1 || v[0] != 2 {
		t.Fatalf("@big_checkout uniques = %+v, want [2] (u1 and u3)", ev.Series[0])
	}
	_, err = ts.client.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Predicate: "nope"}}})
	if !client.IsNotFound(err) {
		t.Fatalf("unknown predicate: err = %v, want a 404", err)
	}
	_, err = ts.client.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "a", Predicate: "big_checkout"}}})
	if !client.IsBadRequest(err) {
		t.Fatalf("a step with both: err = %v, want a 400", err)
	}
}
