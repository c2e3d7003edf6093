package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// fiftyRules reads 10 event names, 5 rules each, and profiles.
func fiftyRules() string {
	var sb strings.Builder
	sb.WriteString("segments:\n")
	for n := range 10 {
		ev := fmt.Sprintf("e%02d", n)
		fmt.Fprintf(&sb, "  - {id: c%02d, did: {event: %s, count: \">= 2\", last: 7d}}\n", n, ev)
		fmt.Fprintf(&sb, "  - {id: s%02d, did: {event: %s, aggregate: sum(v), is: \">= 100\", last: 30d}}\n", n, ev)
		fmt.Fprintf(&sb, "  - {id: d%02d, did: {event: %s, aggregate: days, is: \">= 2\", last: 14d}}\n", n, ev)
		fmt.Fprintf(&sb, "  - {id: q%02d, sequence: {steps: [{event: %s}, {event: e%02d}], within: 1h, last: 7d}}\n", n, ev, (n+1)%10)
		if n%2 == 0 {
			fmt.Fprintf(&sb, "  - {id: x%02d, did_not: {event: %s, last: 24h}}\n", n, ev)
		} else {
			fmt.Fprintf(&sb, "  - {id: p%02d, profile: age >= %d}\n", n, 18+n)
		}
	}
	return sb.String()
}

// BenchmarkSnapshot1MUsers50Segments measures a snapshot of an engine
// holding 1M users (a profile each, 8M events over 7 days) and 50
// segments: the ingest pause while the state is captured, encoding the
// capture while live batches are applied (and their rate against the rate
// without a snapshot), writing and syncing the file, and loading it into a
// new engine (wall and CPU time, load-s and load-cpu-s); with the size. The
// baseline is ingest-s, the time the engine took to build the same state
// from the events (what a start without a snapshot replays).
//
// SEGD_BENCH_USERS scales it down (events stay eight per user): a million
// users take about ten minutes on a loaded 2-core machine.
func BenchmarkSnapshot1MUsers50Segments(b *testing.B) {
	users := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("SEGD_BENCH_USERS")); err == nil && n > 0 {
		users = n
	}
	events := 8 * users
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs, err := rules.Compile([]rules.File{{Name: "fifty.yaml", Data: []byte(fiftyRules())}}, rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour}
	e := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rng := rand.New(rand.NewPCG(1, 1))
	seq := uint64(0)
	var batch rules.Batch
	flush := func() {
		seq++
		if err := e.Apply(ctx, &ingest.Message{Seq: seq, Batch: batch}); err != nil {
			b.Fatal(err)
		}
		batch = rules.Batch{}
	}
	name := func(u int) string { return fmt.Sprintf("user-%07d", u) }
	ingestStart := time.Now()
	for u := range users {
		batch.Profiles = append(batch.Profiles, rules.ProfileUpdate{User: name(u), Attrs: map[string]any{"age": float64(15 + u%20)}})
		if len(batch.Profiles) == 10_000 {
			flush()
		}
	}
	for i := range events {
		batch.Events = append(batch.Events, rules.Event{User: name(rng.IntN(users)), Name: fmt.Sprintf("e%02d", rng.IntN(10)),
			Time: now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute).UnixMilli(), Props: map[string]any{"v": float64(rng.IntN(50))}})
		if len(batch.Events) == 10_000 || i == events-1 {
			flush()
		}
	}
	buildTime := time.Since(ingestStart) // the baseline: building the state from events

	// Live traffic for measuring ingest while a capture is encoded, and its
	// rate without one (the baseline of ingest-during-encode-x).
	live := make([]rules.Batch, 50)
	for i := range live {
		for range 10_000 {
			live[i].Events = append(live[i].Events, rules.Event{User: name(rng.IntN(users)), Name: fmt.Sprintf("e%02d", rng.IntN(10)),
				Time: now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute).UnixMilli(), Props: map[string]any{"v": float64(rng.IntN(50))}})
		}
	}
	next := 0
	applyLive := func() {
		seq++
		if err := e.Apply(ctx, &ingest.Message{Seq: seq, Batch: live[next%len(live)]}); err != nil {
			b.Fatal(err)
		}
		next++
	}
	t0 := time.Now()
	for range 20 {
		applyLive()
	}
	liveRate := 200_000 / time.Since(t0).Seconds()
	var duringEvents int
	var during time.Duration

	dir := b.TempDir()
	var size int
	var pause, encode, write, load, loadCPU time.Duration
	b.ResetTimer()
	for b.Loop() {
		w := &snapio.Writer{Buf: make([]byte, 0, size+size/8)}
		t0 := time.Now()
		var c *Capture
		if err := e.Do(ctx, func() (err error) { c, err = e.Capture(); return err }); err != nil {
			b.Fatal(err)
		}
		pause += time.Since(t0)
		t0 = time.Now()
		encoded := make(chan error, 1)
		go func() { encoded <- c.Encode(w) }()
		var encErr error
	ingestWhileEncoding:
		for {
			select {
			case encErr = <-encoded:
				break ingestWhileEncoding
			default:
				applyLive()
				duringEvents += 10_000
			}
		}
		if encErr != nil {
			b.Fatal(encErr)
		}
		encode += time.Since(t0)
		during += time.Since(t0)
		if err := e.Do(ctx, func() error { c.Release(); return nil }); err != nil {
			b.Fatal(err)
		}
		size = len(w.Buf)
		t0 = time.Now()
		f, err := os.Create(filepath.Join(dir, "snap"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(w.Buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		write += time.Since(t0)
		t0 = time.Now()
		c0 := cpuTime() // the Run loop is idle meanwhile
		data, err := os.ReadFile(filepath.Join(dir, "snap"))
		if err != nil {
			b.Fatal(err)
		}
		e2 := New(cfg)
		if _, err := e2.Restore(snapio.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		load += time.Since(t0)
		loadCPU += time.Duration(cpuTime() - c0)
	}
	n := float64(b.N)
	b.ReportMetric(float64(size)/1e6, "MB")
	b.ReportMetric(pause.Seconds()/n, "pause-s")
	b.ReportMetric(encode.Seconds()/n, "encode-s")
	b.ReportMetric(write.Seconds()/n, "write-s")
	b.ReportMetric(load.Seconds()/n, "load-s")
	b.ReportMetric(loadCPU.Seconds()/n, "load-cpu-s")
	b.ReportMetric(float64(size)/float64(users), "bytes/user")
	b.ReportMetric(buildTime.Seconds(), "ingest-s")
	b.ReportMetric(buildTime.Seconds()/(load.Seconds()/n), "load-vs-ingest-x")
	b.ReportMetric(float64(duringEvents)/during.Seconds(), "ingest-during-encode-ev/s")
	b.ReportMetric(liveRate, "ingest-ev/s")
	b.ReportMetric(float64(duringEvents)/during.Seconds()/liveRate, "ingest-during-encode-x")
}
