package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
	"github.com/segd/segd/host/engine"
)

// startSegd runs segd with an embedded NATS server on a random port and a
// few events applied; it returns the NATS URL.
func startSegd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("segments:\n  - id: buyers\n    did: {event: pay, last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC))
	srv, err := host.Start(context.Background(), host.Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		RulePaths: []string{rulesFile}, Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	day := func(d, h int) string { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC).Format(time.RFC3339) }
	items := []api.Item{
		{User: "u1", Event: "view", Time: day(1, 9)}, {User: "u1", Event: "pay", Time: day(1, 10), Props: map[string]any{"amount": 12.5}},
		{User: "u2", Event: "view", Time: day(1, 9)}, {User: "u2", Event: "view", Time: day(2, 9)},
		{User: "u3", Event: "view", Time: day(2, 9)}, {User: "u1", Event: "view", Time: day(3, 9)},
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ack, err := client.PublishBatch(context.Background(), srv.JetStream(), "segd.events.test", items, "cli-1")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(nc)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.LastSeq >= ack.Sequence {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("segd did not apply the events in time: %v %v", st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	return srv.ClientURL()
}

func runSegd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestAnalyzeCommands(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	rng := []string{"--nats", url, "--from", "2026-11-01", "--to", "2026-11-03"}
	for _, tc := range []struct {
		args []string
		want []string // substrings of the output, in order
	}{
		{[]string{"analyze", "events", "view", "pay", "-s", "buyers", "-m", "uniques,sum:amount"},
			[]string{"view: uniques", "DAY", "ALL USERS", "BUYERS", "2026-11-01", "2", "1", "pay: sum:amount", "12.50"}},
		{[]string{"analyze", "funnel", "view", "pay", "--window", "2h", "-s", "buyers"},
			[]string{"window 2h", "1 view", "3", "100.0%", "2 pay", "1", "33.3%"}},
		{[]string{"analyze", "retention", "view", "--days", "2", "--counts"},
			[]string{"all users (first_time)", "COHORT", "DAY 1", "DAY 2", "2026-11-01", "2", "1", "1", "2026-11-02", "1", "0", "2026-11-03", "0"}},
		// docs/analysis.md's example on data without "signup": empty
		// cohorts (it answered 500 nil pointer dereference).
		{[]string{"analyze", "retention", "signup", "view", "--days", "3"},
			[]string{"all users (first_time)", "COHORT", "2026-11-01", "0", "-", "-", "2026-11-03", "0"}},
		{[]string{"analyze", "trend", "buyers"},
			[]string{"DAY", "ALL USERS", "BUYERS", "2026-11-01", "2", "2026-11-03", "3"}},
	} {
		out, err := runSegd(t, append(tc.args, rng...)...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		rest := out
		for _, w := range tc.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Fatalf("%v: output lacks %q (in order):\n%s", tc.args, w, out)
			}
			rest = rest[i+len(w):]
		}
	}

	out, err := runSegd(t, append([]string{"analyze", "funnel", "view", "pay", "--json"}, rng...)...)
	if err != nil {
		t.Fatal(err)
	}
	var fr api.AnalysisFunnelReply
	if err := json.Unmarshal([]byte(out), &fr); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(fr.Segments) != 1 || fr.Segments[0].Steps[1].Users != 1 {
		t.Fatalf("--json funnel: %+v", fr)
	}

	if _, err := runSegd(t, append([]string{"analyze", "funnel", "view", "--window", "soon"}, rng...)...); !client.IsBadRequest(err) || !strings.Contains(err.Error(), `"window"`) {
		t.Fatalf("bad window: %v", err)
	}
	if _, err := runSegd(t, append([]string{"analyze", "trend", "nope"}, rng...)...); !client.IsNotFound(err) {
		t.Fatalf("unknown segment: %v", err)
	}
}

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	out, err := runSegd(t, "status", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	rest := out
	for _, w := range []string{"ready", "yes", "last stream seq", "1", "events", "6", "users", "3"} {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("status output lacks %q (in order):\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
}

func TestSegmentPreviewCommand(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	file := filepath.Join(t.TempDir(), "viewers.yaml")
	if err := os.WriteFile(file, []byte("id: viewers\ndid: {event: view, count: \">= 2\", last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runSegd(t, "segment", "preview", file, "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	// u1 viewed on the 1st and 3rd, u2 on the 1st and 2nd, u3 once.
	if !strings.HasPrefix(out, "viewers (behavioral): 2 users") || !strings.Contains(out, "u1\n") || !strings.Contains(out, "u2\n") || strings.Contains(out, "u3") {
		t.Fatalf("preview output:\n%s", out)
	}
	if _, err := runSegd(t, "segment", "preview", file, "--nats", url); err != nil {
		t.Fatalf("a second preview (after the first finished): %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: buyers\ndid: {event: pay, last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runSegd(t, "segment", "preview", bad, "--nats", url); err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Fatalf("a taken id: %v", err)
	}
}
