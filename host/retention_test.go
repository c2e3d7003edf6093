package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// TestRetentionNotWholeDays: a retention under a day, or with a part of a
// day, is refused with an error that says what to give instead. Before,
// 12h became 0 days, which rules, the engine and the analysis index each
// read as their 90-day default while the stream kept 12 hours.
func TestRetentionNotWholeDays(t *testing.T) {
	t.Parallel()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		retention time.Duration
		want      []string
	}{
		{12 * time.Hour, []string{"retention 12h", "at least 24h"}},
		{time.Nanosecond, []string{"retention 1ns", "at least 24h"}},
		{-48 * time.Hour, []string{"retention -48h", "at least 24h"}},
		{36 * time.Hour, []string{"retention 36h", "whole number of days", "24h (1 day)", "48h (2 days)"}},
	} {
		dir := t.TempDir()
		srv, err := Start(context.Background(), Config{DataDir: dir, NoListen: true, RulePaths: []string{rulesFile},
			Retention: c.retention, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			srv.Close()
			t.Errorf("retention %s: started", c.retention)
			continue
		}
		for _, w := range c.want {
			if !contains(err.Error(), w) {
				t.Errorf("retention %s: error %q does not say %q", c.retention, err, w)
			}
		}
	}
}

// TestRetentionTwoDays: a 2-day retention caps rule windows at 2 days and
// makes the engine and the analysis index keep 2 calendar days.
func TestRetentionTwoDays(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	long := filepath.Join(dir, "long.yaml")
	if err := os.WriteFile(long, []byte("segments:\n  - id: w3\n    did: {event: pay, last: 3d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{DataDir: filepath.Join(dir, "a"), NoListen: true, RulePaths: []string{long},
		Retention: 48 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !contains(err.Error(), "longer than the 2d of history") {
		t.Fatalf("a 3d window with 48h retention: err = %v", err)
	}

	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("segments:\n  - id: w2\n    did: {event: pay, last: 2d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ts := startServer(t, Config{DataDir: filepath.Join(dir, "b"), Listen: "127.0.0.1:0", RulePaths: []string{ok},
		Retention: 48 * time.Hour, Clock: engine.NewManualClock(now), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if d := ts.srv.analysis.Days(); d != 2 {
		t.Errorf("analysis index keeps %d days, want 2", d)
	}
	at := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	ts.publish(t, rules.Batch{Events: []rules.Event{
		{User: "u1", Name: "pay", Time: at(25 * time.Hour)}, // yesterday: kept
		{User: "u2", Name: "pay", Time: at(49 * time.Hour)}, // the day before: older than 2 days
	}}, "b1")
	if st := ts.status(t); st.Expired != 1 {
		t.Errorf("expired events = %d, want 1 (the engine keeps 2 days)", st.Expired)
	}
	if in, err := ts.client.IsMember(context.Background(), "u1", "w2"); err != nil || !in {
		t.Errorf("u1 in w2 = %v, %v", in, err)
	}
}
