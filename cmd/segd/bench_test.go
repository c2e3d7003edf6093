package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/internal/ingestbench"
)

// TestBenchIngestSmoke runs `segd bench ingest` end to end at a small
// scale, measuring a built segd binary as 'segd serve' subprocesses, and
// checks that the report is sane: every event applied in each run, positive
// rates, a measured peak RSS per rule set, and freshness probes announced,
// delivered and seen by member.check. It asserts no timing.
func TestBenchIngestSmoke(t *testing.T) {
	t.Parallel()
	bin := segdBinary(t)
	out, err := runSegd(t, "bench", "ingest", "--segd", bin, "--dir", t.TempDir(), "--users", "500", "--events", "6000",
		"--batch", "500", "--runs", "1", "--rules", "1,6,100", "--freshness", "2000", "--freshness-duration", "1s", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rep ingestbench.IngestReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("the --json report: %v\n%s", err, out)
	}
	if rep.Published.Events != 6000 || rep.Published.Messages != 12 || !rep.RSSMeasured {
		t.Fatalf("published %+v, rss measured %v; want 6000 events in 12 batches, RSS measured", rep.Published, rep.RSSMeasured)
	}
	if rep.AckRate <= 0 || rep.JSONRate <= 0 {
		t.Errorf("baselines %v and %v events/s, want positive", rep.AckRate, rep.JSONRate)
	}
	if len(rep.Rows) != 3 {
		t.Fatalf("%d rows, want 3 (1, 6 and 100 rules)", len(rep.Rows))
	}
	for _, row := range rep.Rows {
		if row.Rate <= 0 || row.Ratio <= 0 || row.Applied != 6000 || row.Invalid != 0 || row.PeakRSS < 1<<20 {
			t.Errorf("%d rules: %+v; want a positive rate and ratio, 6000 events applied, a peak RSS", row.Rules, row)
		}
	}
	if len(rep.Freshness) != 1 {
		t.Fatalf("%d freshness rows, want 1", len(rep.Freshness))
	}
	f := rep.Freshness[0]
	if f.Batches == 0 || f.Notice.N != f.Batches || f.Consumer.N != f.Batches || f.Check.N == 0 || f.Notice.P50 <= 0 || f.Check.P50 <= 0 {
		t.Errorf("freshness %+v: want every batch's probe announced and delivered, and member.check probes", f)
	}
}

// TestBenchMemberSmoke runs `segd bench member` at a small scale against a
// segd subprocess and checks the echo ran in a process of its own too, and
// every row has positive figures beside the echo's, from all its rounds.
func TestBenchMemberSmoke(t *testing.T) {
	t.Parallel()
	bin := segdBinary(t)
	out, err := runSegd(t, "bench", "member", "--segd", bin, "--dir", t.TempDir(), "--users", "500", "--rules", "100",
		"--clients", "1,4", "--requests", "100", "--ingest-rate", "5000", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rep ingestbench.MemberReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("the --json report: %v\n%s", err, out)
	}
	// idle and ingest × check and segments × 1 and 4 clients.
	if rep.Users != 500 || rep.Segments != 100 || len(rep.Rows) != 8 {
		t.Fatalf("%d users, %d segments, %d rows; want 500, 100, 8", rep.Users, rep.Segments, len(rep.Rows))
	}
	if !rep.EchoApart || rep.Rounds != ingestbench.MemberRounds {
		t.Errorf("echo apart %v, %d rounds; want the echo in a process of its own as segd, %d rounds", rep.EchoApart, rep.Rounds, ingestbench.MemberRounds)
	}
	for _, row := range rep.Rows {
		if row.Stats.Requests < 100 || row.Echo.Requests < 100 || row.Stats.P50 <= 0 || row.Stats.Rate <= 0 || row.P50X <= 0 || row.RateX <= 0 {
			t.Errorf("%s %s, %d clients: %+v; want at least 100 requests each and positive figures", row.Request, row.Mode, row.Clients, row)
		}
	}
}

func TestBenchSegdFlagsExcludeEachOther(t *testing.T) {
	t.Parallel()
	_, err := runSegd(t, "bench", "ingest", "--segd", "/bin/true", "--in-process")
	if err == nil || !strings.Contains(err.Error(), "--segd and --in-process") {
		t.Fatalf("error %v, want one naming --segd and --in-process", err)
	}
}

// TestBenchEchoServer runs the hidden `segd bench echo-server` as `segd
// bench member` does, checks that it answers on the echo subject, and that
// it stops cleanly when told to.
func TestBenchEchoServer(t *testing.T) {
	t.Parallel()
	bin := segdBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := ingestbench.NewEnv(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	stop, err := ingestbench.Subprocess{Path: bin}.StartEcho(ctx, env.URL)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := env.Conn().Request(ingestbench.EchoSubject, []byte(`{}`), 10*time.Second)
	if err != nil {
		_ = stop()
		t.Fatalf("request to the echo server: %v", err)
	}
	if !strings.HasPrefix(string(msg.Data), `{"member":`) {
		t.Errorf("echo replied %s, want a member.check-sized reply", msg.Data)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := env.Conn().Request(ingestbench.EchoSubject, []byte(`{}`), time.Second); err == nil {
		t.Error("the echo still answers after stop")
	}
}
