package host

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/host/engine"
)

const replayBenchRules = `
segments:
  - {id: frequent_checkout, did: {event: checkout, count: ">= 3", last: 7d}}
  - {id: big_spenders, did: {event: pay, where: "(props.amount ?? 0) >= 1000", last: 30d}}
  - {id: heavy_browsers, did: {events: [page_view, search], count: ">= 50", last: 7d}}
  - {id: quiet, did: {event: page_view, count: "< 2", last: 7d}}
  - {id: converted, sequence: {steps: [{event: checkout}, {event: pay}], within: 1h, last: 7d}}
  - {id: young_men, profile: age < 25 && gender == "male"}
`

// BenchmarkReplay measures, on the demo shop's stream (10k users, 14 days),
// live ingest (publishing to JetStream while segd applies, until the last
// batch is applied), a full replay of the same log at start, and a start
// from the snapshot written at shutdown. replay-x is replay speed over live
// ingest speed, in events per second.
func BenchmarkReplay(b *testing.B) {
	end := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	g := shop.New(shop.Config{Seed: 1, Users: 10000, Start: end.AddDate(0, 0, -14), End: end})
	var batches [][]byte
	var items []api.Item
	events := 0
	for it := range g.All() {
		items = append(items, it)
		if it.Event != "" {
			events++
		}
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
	var live, replay, fromSnap time.Duration
	for b.Loop() {
		dir := b.TempDir()
		start := func() (*Server, time.Duration) {
			t0 := time.Now()
			srv, err := Start(context.Background(), Config{DataDir: dir, NoListen: true, RulePaths: []string{rulesFile},
				Clock: engine.NewManualClock(end), SnapshotInterval: -1, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.segAPI.waiter.Wait(context.Background(), srv.segAPI.replayTo); err != nil {
				b.Fatal(err)
			}
			return srv, time.Since(t0)
		}
		srv, _ := start()
		js := srv.JetStream()
		t0 := time.Now()
		var last jetstream.PubAckFuture
		for _, data := range batches {
			f, err := js.PublishAsync("segd.events.bench", data)
			if err != nil {
				b.Fatal(err)
			}
			last = f
		}
		ack := <-last.Ok()
		if err := srv.segAPI.waiter.Wait(context.Background(), ack.Sequence); err != nil {
			b.Fatal(err)
		}
		live += time.Since(t0)
		// Close writes a snapshot; remove it for a full replay.
		srv.Close()
		os.RemoveAll(filepath.Join(dir, "snapshots"))
		srv, d := start()
		replay += d
		srv.Close()
		srv, d = start()
		fromSnap += d
		if srv.segAPI.waiter.Last() != ack.Sequence || srv.replayFrom != ack.Sequence+1 {
			b.Fatalf("the snapshot start did not load the snapshot at %d", ack.Sequence)
		}
		srv.Close()
	}
	n := float64(b.N)
	liveRate := float64(events) * n / live.Seconds()
	replayRate := float64(events) * n / replay.Seconds()
	b.ReportMetric(float64(events), "events")
	b.ReportMetric(liveRate, "live-events/s")
	b.ReportMetric(replayRate, "replay-events/s")
	b.ReportMetric(replayRate/liveRate, "replay-x")
	b.ReportMetric(fromSnap.Seconds()/n, "snapshot-start-s")
	b.ReportMetric(replay.Seconds()/n, "replay-start-s")
}
