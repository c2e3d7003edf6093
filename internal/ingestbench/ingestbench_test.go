package ingestbench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/host"
	"github.com/segd/segd/rules"
)

func TestGeneratorIsDeterministicAndValid(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	cfg := StreamConfig{Users: 300, Events: 2500, BatchSize: 1000, Seed: 7, Days: 3, End: end}
	all := func() [][]byte {
		g := NewGenerator(cfg)
		var out [][]byte
		for {
			b, _, ok := g.Next(nil)
			if !ok {
				return out
			}
			out = append(out, b)
		}
	}
	a, b := all(), all()
	if !slices.EqualFunc(a, b, bytes.Equal) {
		t.Fatal("two generators with the same seed wrote different streams")
	}
	if len(a) != 3 {
		t.Fatalf("%d batches of 2500 events by 1000, want 3", len(a))
	}
	events, users, names := 0, map[string]bool{}, map[string]bool{}
	for _, batch := range a {
		var items []struct {
			User  string         `json:"user"`
			Event string         `json:"event"`
			Time  int64          `json:"time"`
			Props map[string]any `json:"props"`
		}
		if err := json.Unmarshal(batch, &items); err != nil {
			t.Fatalf("batch is not JSON: %v", err)
		}
		for _, it := range items {
			events++
			users[it.User], names[it.Event] = true, true
			if tm := time.UnixMilli(it.Time); tm.Before(end.AddDate(0, 0, -3)) || !tm.Before(end) {
				t.Fatalf("event time %s outside the 3 days before %s", tm, end)
			}
		}
	}
	if events != 2500 || len(users) > 300 || len(users) < 250 || len(names) != EventNames {
		t.Fatalf("%d events, %d users, %d event names; want 2500, about 300, %d", events, len(users), len(names), EventNames)
	}
	other := NewGenerator(StreamConfig{Users: 300, Events: 2500, Seed: 8, Days: 3, End: end})
	if first, _, _ := other.Next(nil); bytes.Equal(first, a[0]) {
		t.Fatal("another seed wrote the same stream")
	}
}

func TestRuleSetsCompile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, n := range []int{1, 6, 100} {
		for _, probe := range []bool{false, true} {
			path, err := WriteRules(dir, n, probe)
			if err != nil {
				t.Fatal(err)
			}
			segs, err := host.LoadRules(rules.Options{MaxWindowDays: 90}, path)
			if err != nil {
				t.Fatalf("%d rules: %v\n%s", n, err, RulesYAML(n, probe))
			}
			ids := SegmentIDs(n)
			if probe {
				ids = append(ids, ProbeSegment)
			}
			var got []string
			for _, s := range segs {
				got = append(got, s.ID)
			}
			slices.Sort(got)
			slices.Sort(ids)
			if !slices.Equal(got, ids) {
				t.Fatalf("%d rules: segments %v, want %v", n, got, ids)
			}
		}
	}
}

// TestRunIngestInProcess runs the whole ingest measurement at a small
// scale with segd in this process, and checks that it produced sane
// figures: segd applied every event, every rate is positive, and the
// freshness probes were announced and seen by member.check.
func TestRunIngestInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunIngest(ctx, IngestConfig{Stream: StreamConfig{Users: 500, Events: 6000, BatchSize: 500},
		Runs: 1, RuleSets: []int{1, 100}, Dir: t.TempDir(),
		Freshness: FreshnessConfig{Rates: []int{2000}, Duration: time.Second, Rules: 6}})
	if err != nil {
		t.Fatal(err)
	}
	checkIngestReport(t, rep, 6000, []int{1, 100})
	if rep.RSSMeasured {
		t.Error("RSS reported measured for an in-process segd")
	}
}

// checkIngestReport asserts that rep is a complete, sane report.
func checkIngestReport(t *testing.T, rep *IngestReport, events int, ruleSets []int) {
	t.Helper()
	if rep.Published.Events != events || rep.Published.LastSeq == 0 {
		t.Fatalf("published %+v, want %d events", rep.Published, events)
	}
	if rep.AckRate <= 0 || rep.JSONRate <= 0 {
		t.Errorf("baseline rates %v and %v, want both positive", rep.AckRate, rep.JSONRate)
	}
	if len(rep.Rows) != len(ruleSets) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), len(ruleSets))
	}
	for i, row := range rep.Rows {
		if row.Rules != ruleSets[i] || row.Rate <= 0 || row.Ratio <= 0 {
			t.Errorf("row %+v: want %d rules and a positive rate and ratio", row, ruleSets[i])
		}
		if row.Applied != uint64(events) || row.Invalid != 0 {
			t.Errorf("with %d rules segd applied %d events (%d invalid items), want all %d", row.Rules, row.Applied, row.Invalid, events)
		}
		if rep.RSSMeasured && row.PeakRSS < 1<<20 {
			t.Errorf("with %d rules peak RSS %d bytes, want a measured figure", row.Rules, row.PeakRSS)
		}
	}
	for _, f := range rep.Freshness {
		if f.Batches == 0 || f.Achieved <= 0 || f.Applied <= 0 {
			t.Errorf("freshness at %d: %d batches at %v events/s", f.Rate, f.Batches, f.Achieved)
		}
		// Every batch's probe is announced and delivered; member.check
		// probes one batch in ten or so, at least the first.
		if f.Notice.N != f.Batches || f.Consumer.N != f.Batches || f.Check.N == 0 {
			t.Errorf("freshness at %d: %d batches, %d notices, %d deliveries, %d checks", f.Rate, f.Batches, f.Notice.N, f.Consumer.N, f.Check.N)
		}
		if f.Notice.P50 <= 0 || f.Check.P50 <= 0 || f.Consumer.P50 <= 0 {
			t.Errorf("freshness at %d: latencies %+v %+v %+v, want positive", f.Rate, f.Notice, f.Check, f.Consumer)
		}
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("the report (a smoke test's figures, not a measurement):\n%s", text.String())
	if !bytes.Contains(text.Bytes(), []byte("| 100 |")) && slices.Contains(ruleSets, 100) {
		t.Errorf("the text report has no row for 100 rules:\n%s", text.String())
	}
}

// TestMemberBenchInProcess loads a small stream, measures every request
// kind and mode once, and checks the figures are sane.
func TestMemberBenchInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunMember(ctx, MemberConfig{Stream: StreamConfig{Users: 500, BatchSize: 500}, Rules: 100,
		Segd: InProcess{Snapshots: true}, Dir: t.TempDir(), IngestRate: 5000}, []int{1, 4}, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Users != 500 || rep.Segments != 100 || len(rep.Rows) != 3*2*2 {
		t.Fatalf("%d users, %d segments, %d rows; want 500, 100, 12", rep.Users, rep.Segments, len(rep.Rows))
	}
	if rep.EchoApart || rep.Rounds != MemberRounds {
		t.Errorf("echo apart %v, %d rounds; want the echo in this process beside segd, %d rounds", rep.EchoApart, rep.Rounds, MemberRounds)
	}
	for _, row := range rep.Rows {
		if row.Stats.Requests < 100 || row.Echo.Requests < 100 || row.Stats.P50 <= 0 || row.Stats.Rate <= 0 || row.RateX <= 0 {
			t.Errorf("row %+v: want at least 100 requests each, positive figures", row)
		}
	}
}

// TestPollIntervalNearTheEnd checks that the catch-up timer asks more often
// near the last sequence, so that a run is not quantized to 50 ms.
func TestPollIntervalNearTheEnd(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		applied, seq uint64
		want         time.Duration
	}{
		{0, 2130, pollEvery},
		{1000, 2130, pollEvery},
		{1917, 2130, pollNearEnd},
		{2129, 2130, pollNearEnd},
		{0, 0, pollEvery},
	} {
		if got := pollInterval(c.applied, c.seq); got != c.want {
			t.Errorf("pollInterval(%d, %d) = %v, want %v", c.applied, c.seq, got, c.want)
		}
	}
}

// TestCPUTimeOfThisProcess reads this process's CPU time from /proc after
// burning some, and checks it grew.
func TestCPUTimeOfThisProcess(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		x := 0
		for i := range 10_000_000 {
			x += i
		}
		_ = x
		after, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v for 10 s of work", before)
		}
	}
}
