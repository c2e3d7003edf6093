package host

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/host/engine"
)

// demoEvents is about the events of the demo shop's log (10k users, 14
// days), which BenchmarkRulePut reads by default.
const demoEvents = 655_624

// BenchmarkRulePut measures the time from a rule.put of a changed segment
// to its serving the new revision exactly, on the demo shop's log (10k
// users, 14 days, 656k events) or, with SEGD_BENCH_EVENTS=N, a shop log of
// about N events (more users over the same 14 days: 10000000 takes
// minutes), while a publisher sends 20 batches a second.
//
// The baseline is live ingest in the same run: load-events/s is segd's
// rate applying the log as it is published, as fast as JetStream takes
// it. rebuild-events/s is the rate at which the rebuilds read and judged
// the log's events (a 30-day window: the whole log), rebuild-x their
// ratio. live-x is live ingest's rate during the rebuilds over the
// publisher's offered rate: 1 when ingest keeps up while segments
// rebuild. put-to-exact-ms is the time from the put to the new revision
// served, for the 30-day segment; put-to-exact-24h-ms for a segment whose
// window reaches only the last day (the rebuild reads from there).
func BenchmarkRulePut(b *testing.B) {
	target := demoEvents
	if s := os.Getenv("SEGD_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("SEGD_BENCH_EVENTS=%q: want a number of events", s)
		}
		target = n
	}
	users := int(int64(10000) * int64(target) / demoEvents)
	end := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	g := shop.New(shop.Config{Seed: 1, Users: users, Start: end.AddDate(0, 0, -14), End: end})
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
	waitIdle := func() {
		info, err := js.Stream(ctx, "SEGD_EVENTS")
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.segAPI.waiter.Wait(ctx, info.CachedInfo().State.LastSeq); err != nil {
			b.Fatal(err)
		}
	}
	eventsNow := func() uint64 { return srv.Engine().Status().Events }

	// The log is generated into a file first (the generator is slower
	// than segd), then published from it as fast as JetStream takes it
	// while segd applies it: that is the baseline. The first batches are
	// kept for the live publisher.
	logFile := filepath.Join(b.TempDir(), "log.jsonl")
	w, err := os.Create(logFile)
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var live [][]byte
	var items []api.Item
	write := func() {
		data, _ := json.Marshal(items)
		items = items[:0]
		if len(live) < 400 {
			live = append(live, data)
		}
		bw.Write(data)
		bw.WriteByte('\n')
	}
	for it := range g.All() {
		items = append(items, it)
		if len(items) == 1000 {
			write()
		}
	}
	if len(items) > 0 {
		write()
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Seek(0, 0); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(w)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var pending []jetstream.PubAckFuture
	t0 := time.Now()
	for sc.Scan() {
		f, err := js.PublishAsync("segd.events.bench", slices.Clone(sc.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, f)
		if len(pending) >= 256 { // bound what is in flight
			for _, f := range pending {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			pending = pending[:0]
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing the log did not complete")
	}
	waitIdle()
	loaded := eventsNow()
	load := float64(loaded) / time.Since(t0).Seconds()

	// The live publisher re-sends the first batches at 20 a second.
	// A publish that times out (JetStream slow on a loaded machine) is
	// counted, not offered, and not fatal.
	var stop atomic.Bool
	var offered, failed atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; !stop.Load(); i++ {
			<-tick.C
			if _, err := js.Publish(ctx, "segd.events.bench", live[i%len(live)]); err != nil {
				failed.Add(1)
				continue
			}
			offered.Add(1)
		}
	}()
	defer func() { stop.Store(true); <-done }()

	// put applies a definition and waits until its revision serves.
	put := func(def, id string) (time.Duration, *api.RebuildSummary) {
		t1 := time.Now()
		p, err := srv.rules.PutRule(ctx, api.RulePutRequest{Definition: def})
		if err != nil {
			b.Fatal(err)
		}
		for {
			r, err := srv.rules.GetRule(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if r.Serving == p.Revision && r.State == "active" && r.LastRebuild != nil && r.LastRebuild.Revision == p.Revision {
				return time.Since(t1), r.LastRebuild
			}
			time.Sleep(time.Millisecond) // polling a condition
		}
	}
	defs := []string{
		"id: big_spenders\ndid: {event: pay, where: \"(props.amount ?? 0) >= 500\", last: 30d}\n",
		"id: big_spenders\ndid: {event: pay, where: \"(props.amount ?? 0) >= 1000\", last: 30d}\n",
	}
	var took, rebuildTook time.Duration
	var rebuildEvents, liveEvents uint64
	var offeredBatches uint64
	i := 0
	for b.Loop() {
		e1, o1 := eventsNow(), offered.Load()
		d, lr := put(defs[i%2], "big_spenders")
		i++
		took += d
		liveEvents += eventsNow() - e1
		offeredBatches += offered.Load() - o1
		rebuildEvents += lr.Events
		rebuildTook += time.Duration(lr.TookMS) * time.Millisecond
	}
	b.StopTimer()
	short, lr := put("id: recent_buyers\ndid: {event: pay, count: \">= 2\", last: 24h}\n", "recent_buyers")
	rebuild := float64(rebuildEvents) / rebuildTook.Seconds()
	// The live batches' events per batch, for the offered rate.
	perBatch := float64(0)
	for _, data := range live {
		var its []api.Item
		_ = json.Unmarshal(data, &its)
		for _, it := range its {
			if it.Event != "" {
				perBatch++
			}
		}
	}
	perBatch /= float64(len(live))
	liveRate := float64(liveEvents) / took.Seconds()
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "put-to-exact-ms")
	b.ReportMetric(float64(short.Milliseconds()), "put-to-exact-24h-ms")
	b.ReportMetric(rebuild, "rebuild-events/s")
	b.ReportMetric(load, "load-events/s")
	b.ReportMetric(rebuild/load, "rebuild-x")
	b.ReportMetric(liveRate, "live-events/s")
	b.ReportMetric(liveRate/(float64(offeredBatches)*perBatch/took.Seconds()), "live-x")
	b.Logf("log %d events (%d users) loaded at %.0f events/s; a 30d rebuild read %d events at %.0f events/s, put to exact in %v; the 24h one read %d events, from seq %d of %d, put to exact in %v; live publishes that timed out: %d",
		loaded, users, load, rebuildEvents/uint64(b.N), rebuild, took/time.Duration(b.N), lr.Events, lr.FromSeq, lr.ToSeq, short, failed.Load())
}
