package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// runEngine starts an engine for the rules text and returns it with a stop
// function.
func runEngine(b *testing.B, src string, clock Clock) (*Engine, func()) {
	b.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "bench.yaml", Data: []byte(src)}}, rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{Segments: segs, Clock: clock, TickInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return e, func() { cancel(); <-done }
}

// hundredRules reads 20 event names, 5 rules each: counts, sums with a
// where, distinct days, sequences and drop-offs.
func hundredRules() string {
	var sb strings.Builder
	sb.WriteString("segments:\n")
	for n := range 20 {
		ev := fmt.Sprintf("e%02d", n)
		fmt.Fprintf(&sb, "  - {id: c%02d, did: {event: %s, count: \">= 3\", last: 7d}}\n", n, ev)
		fmt.Fprintf(&sb, "  - {id: s%02d, did: {event: %s, where: \"(props.v ?? 0) > 10\", aggregate: sum(v), is: \">= 100\", last: 30d}}\n", n, ev)
		fmt.Fprintf(&sb, "  - {id: d%02d, did: {event: %s, aggregate: days, is: \">= 2\", last: 14d}}\n", n, ev)
		fmt.Fprintf(&sb, "  - {id: q%02d, sequence: {steps: [{event: %s}, {event: e%02d}], within: 1h, last: 7d}}\n", n, ev, (n+1)%20)
		fmt.Fprintf(&sb, "  - {id: x%02d, did_not: {event: %s, last: 24h}}\n", n, ev)
	}
	return sb.String()
}

// BenchmarkIngest100Rules measures the engine's cost per event with 100
// rules routed by event name, against a plain pass over the same events
// (a routing lookup and a counter per event) in the same run.
func BenchmarkIngest100Rules(b *testing.B) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	const batchSize, batches = 1000, 200
	all := make([]rules.Batch, batches)
	for i := range all {
		for range batchSize {
			all[i].Events = append(all[i].Events, rules.Event{
				User:  fmt.Sprintf("u%d", rng.IntN(50000)),
				Name:  fmt.Sprintf("e%02d", rng.IntN(20)),
				Time:  now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute).UnixMilli(),
				Props: map[string]any{"v": float64(rng.IntN(50))},
			})
		}
	}
	events := batches * batchSize

	// Baseline: one pass, routing each event by name to a counter.
	route := map[string]int{}
	for n := range 20 {
		route[fmt.Sprintf("e%02d", n)] = n
	}
	counts := make([]int, 20)
	start, rounds := time.Now(), 0
	for rounds < 3 || time.Since(start) < 300*time.Millisecond {
		for _, bt := range all {
			for i := range bt.Events {
				counts[route[bt.Events[i].Name]]++
			}
		}
		rounds++
	}
	plainNs := float64(time.Since(start).Nanoseconds()) / float64(rounds*events)

	applied := 0
	var cpu int64
	for b.Loop() {
		b.StopTimer()
		e, stop := runEngine(b, hundredRules(), NewManualClock(now))
		b.StartTimer()
		c0 := cpuTime()
		for i := range all {
			if err := e.Apply(context.Background(), &ingest.Message{Seq: uint64(i + 1), Batch: all[i]}); err != nil {
				b.Fatal(err)
			}
		}
		cpu += cpuTime() - c0
		applied += events
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(applied)
	b.ReportMetric(ns, "ns/event")
	// CPU time varies less than elapsed time on a shared machine.
	b.ReportMetric(float64(cpu)/float64(applied), "cpu-ns/event")
	b.ReportMetric(plainNs, "plain-ns/event")
	b.ReportMetric(ns/plainNs, "x-plain")
}

// BenchmarkDayTick measures one midnight with 1M users and 50 windowed
// rules (10 event names, 5 windows each): every user has one event on one
// of the last 7 days, so a seventh of each rule's users have an event on
// the day that leaves a 7-day window. The baseline is the bitmap work
// alone: the union of the users on the leaving days, one iteration each.
func BenchmarkDayTick(b *testing.B) {
	if testing.Short() {
		b.Skip("1M users")
	}
	const users = 1_000_000
	now := time.Date(2026, 11, 28, 23, 0, 0, 0, time.UTC)
	var sb strings.Builder
	sb.WriteString("segments:\n")
	for n := range 10 {
		for _, w := range []int{1, 2, 3, 5, 7} {
			fmt.Fprintf(&sb, "  - {id: r%d_%d, did: {event: e%d, last: %dd}}\n", n, w, n, w)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var batches []rules.Batch
	var cur rules.Batch
	for u := range users {
		cur.Events = append(cur.Events, rules.Event{
			User: fmt.Sprintf("u%07d", u),
			Name: fmt.Sprintf("e%d", rng.IntN(10)),
			Time: now.Add(-time.Duration(rng.IntN(7*24)) * time.Hour).UnixMilli(),
		})
		if len(cur.Events) == 10000 {
			batches = append(batches, cur)
			cur = rules.Batch{}
		}
	}

	var tickMs, baseMs float64
	var affected uint64
	for b.Loop() {
		b.StopTimer()
		clock := NewManualClock(now)
		e, stop := runEngine(b, sb.String(), clock)
		for i := range batches {
			if err := e.Apply(context.Background(), &ingest.Message{Seq: uint64(i + 1), Batch: batches[i]}); err != nil {
				b.Fatal(err)
			}
		}
		// Baseline: union and walk of the users whose events leave a window.
		start := time.Now()
		affected = 0
		for _, l := range e.leaves {
			d := l.(*didLeaf)
			s0, _ := d.cond.Window.Interval(now.UnixMilli(), e.loc)
			s1, _ := d.cond.Window.Interval(now.Add(2*time.Hour).UnixMilli(), e.loc)
			t := roaring.New()
			for _, c := range d.cols {
				if c.start < s1 && c.end > s0 {
					t.Or(c.users)
				}
			}
			it := t.Iterator()
			for it.HasNext() {
				it.Next()
				affected++
			}
		}
		baseMs = float64(time.Since(start).Microseconds()) / 1000
		clock.Set(now.Add(2 * time.Hour)) // past midnight
		b.StartTimer()
		start = time.Now()
		if err := e.Tick(context.Background()); err != nil {
			b.Fatal(err)
		}
		tickMs = float64(time.Since(start).Microseconds()) / 1000
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(tickMs, "tick-ms")
	b.ReportMetric(baseMs, "bitmap-walk-ms")
	b.ReportMetric(tickMs/baseMs, "x-walk")
	b.ReportMetric(float64(affected), "users-judged")
}
