package host

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/host/engine"
)

// BenchmarkRulePut measures, on the demo shop's log (10k users, 14 days),
// the time from a rule.put of a changed segment to its serving the new
// revision exactly, and the rebuild's rate in events of the log per
// second, while a publisher sends 20 batches a second. live-events/s is
// live ingest's rate during the rebuilds, alone-events/s its rate in the
// same run with no rebuild (the baseline): live-x is their ratio, 1 when
// ingest keeps up with the publisher while segments rebuild.
func BenchmarkRulePut(b *testing.B) {
	end := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	g := shop.New(shop.Config{Seed: 1, Users: 10000, Start: end.AddDate(0, 0, -14), End: end})
	var batches [][]byte
	var items []api.Item
	for it := range g.All() {
		items = append(items, it)
		if len(items) == 1000 {
			data, _ := json.Marshal(items)
			batches = append(batches, data)
			items = items[:0]
		}
	}
	rulesFile := filepath.Join(b.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(replayBenchRules), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	srv, err := Start(ctx, Config{DataDir: b.TempDir(), NoListen: true, RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(end), SnapshotInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	js := srv.JetStream()
	publish := func(data []byte) {
		if _, err := js.Publish(ctx, "segd.events.bench", data); err != nil {
			b.Error(err)
		}
	}
	for _, data := range batches {
		publish(data)
	}
	waitIdle := func() {
		info, err := js.Stream(ctx, "SEGD_EVENTS")
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.segAPI.waiter.Wait(ctx, info.CachedInfo().State.LastSeq); err != nil {
			b.Fatal(err)
		}
	}
	waitIdle()

	demo := srv.Engine().Status().Events
	// The live publisher re-sends the demo's batches at 20 a second (about
	// 13,000 events/s), so that the log the rebuilds read stays near the
	// demo's.
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; !stop.Load(); i++ {
			<-tick.C
			publish(batches[i%len(batches)])
		}
	}()
	defer func() { stop.Store(true); <-done }()
	eventsNow := func() uint64 { return srv.Engine().Status().Events }

	// Baseline: live ingest alone, over about a second.
	e0, t0 := eventsNow(), time.Now()
	for time.Since(t0) < time.Second {
		time.Sleep(10 * time.Millisecond) // measuring a rate over a period
	}
	alone := float64(eventsNow()-e0) / time.Since(t0).Seconds()

	defs := []string{
		"id: big_spenders\ndid: {event: pay, where: \"(props.amount ?? 0) >= 500\", last: 30d}\n",
		"id: big_spenders\ndid: {event: pay, where: \"(props.amount ?? 0) >= 1000\", last: 30d}\n",
	}
	var took time.Duration
	var logEvents, liveEvents uint64
	i := 0
	for b.Loop() {
		logEvents += eventsNow() // the log the rebuild reads
		e1, t1 := eventsNow(), time.Now()
		p, err := srv.rules.PutRule(ctx, api.RulePutRequest{Definition: defs[i%2]})
		if err != nil {
			b.Fatal(err)
		}
		i++
		for {
			r, err := srv.rules.GetRule(ctx, "big_spenders")
			if err != nil {
				b.Fatal(err)
			}
			if r.Serving == p.Revision && r.State == "active" {
				break
			}
			time.Sleep(time.Millisecond) // polling a condition
		}
		took += time.Since(t1)
		liveEvents += eventsNow() - e1
	}
	live := float64(liveEvents) / took.Seconds()
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "put-to-exact-ms")
	b.ReportMetric(float64(logEvents)/took.Seconds(), "rebuild-events/s")
	b.ReportMetric(live, "live-events/s")
	b.ReportMetric(alone, "alone-events/s")
	b.ReportMetric(live/alone, "live-x")
	b.Logf("demo log %d events; %d at the last put", demo, eventsNow())
}
