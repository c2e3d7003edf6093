package ingestbench

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// BenchmarkApply measures what a segd catch-up spends on the writer
// goroutine: the engine applying decoded batches of the generated stream,
// with the analysis index observing them, for each rule set of the catch-up
// table (1 is the baseline of the same run). No NATS, no decoding.
func BenchmarkApply(b *testing.B) {
	const users, events = 200000, 500000
	g := NewGenerator(StreamConfig{Users: users, Events: events})
	end := g.Config().End
	var batches []rules.Batch
	for {
		data, _, ok := g.Next(nil)
		if !ok {
			break
		}
		bt, err := bus.DecodeBatch(data, 0)
		if err != nil {
			b.Fatal(err)
		}
		batches = append(batches, bt)
	}
	for _, n := range RuleSets {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			segs, err := rules.Compile([]rules.File{{Name: "bench.yaml", Data: []byte(RulesYAML(n, false))}}, rules.Options{})
			if err != nil {
				b.Fatal(err)
			}
			// The clock reads 10:00 on the stream's last day + 1 (events end
			// at End), moving 1 ms per batch as in a catch-up.
			now := end.Add(10 * time.Hour)
			var cpu int64
			applied := 0
			for b.Loop() {
				b.StopTimer()
				clock := engine.NewManualClock(now)
				ix := analysis.New(analysis.Config{Now: clock.Now})
				e := engine.New(engine.Config{Segments: segs, Clock: clock, TickInterval: time.Hour, Observer: ix})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = e.Run(ctx) }()
				b.StartTimer()
				c0 := cpuTime()
				for i := range batches {
					clock.Advance(time.Millisecond)
					// Apply may change the batch (invalid counts): each run
					// gets a shallow copy.
					if err := e.Apply(ctx, &ingest.Message{Seq: uint64(i + 1), Batch: batches[i]}); err != nil {
						b.Fatal(err)
					}
				}
				ix.Sync()
				cpu += cpuTime() - c0
				applied += events
				b.StopTimer()
				cancel()
				<-done
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(applied), "ns/event")
			b.ReportMetric(float64(cpu)/float64(applied), "cpu-ns/event")
		})
	}
}

// cpuTime is this process's user and system CPU time, ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
