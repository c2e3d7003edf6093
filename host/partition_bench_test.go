package host

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/host/engine"
)

// BenchmarkPartitionsIngest measures live ingest (publishing the demo
// shop's stream, 5k users over 7 days in 1000-item batches, until every
// partition has applied it) with P = 1, 2 and 4 partitions, published
// partition-aware (each batch split onto segd.part.<N>.events), and with
// P = 4 published as mixed batches on segd.events.> (every partition
// decodes every batch and keeps its users). Figures, all from one run:
// events/s of each; pN-x, P = N's rate over P = 1's; pN-core-eff, that
// speed-up per core used (min(P, GOMAXPROCS)); mixed-x, the mixed P = 4
// rate over the partition-aware P = 4 rate (the routing cost of mixed
// batches).
func BenchmarkPartitionsIngest(b *testing.B) {
	end := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	g := shop.New(shop.Config{Seed: 1, Users: 5000, Start: end.AddDate(0, 0, -7), End: end})
	var batches [][]api.Item
	var cur []api.Item
	events := 0
	for it := range g.All() {
		cur = append(cur, it)
		if it.Event != "" {
			events++
		}
		if len(cur) == 1000 {
			batches = append(batches, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	type msg struct {
		subject string
		data    []byte
	}
	encode := func(p int, aware bool) []msg {
		var out []msg
		for _, batch := range batches {
			if !aware || p == 1 {
				data, _ := json.Marshal(batch)
				out = append(out, msg{"segd.events.bench", data})
				continue
			}
			groups := make([][]api.Item, p)
			for _, it := range batch {
				n := api.Partition(it.User, p)
				groups[n] = append(groups[n], it)
			}
			for n, grp := range groups {
				if len(grp) > 0 {
					data, _ := json.Marshal(grp)
					out = append(out, msg{api.PartitionSubject(n), data})
				}
			}
		}
		return out
	}
	rulesFile := filepath.Join(b.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(replayBenchRules), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(p int, msgs []msg) time.Duration {
		srv, err := Start(context.Background(), Config{DataDir: b.TempDir(), NoListen: true, RulePaths: []string{rulesFile},
			Clock: engine.NewManualClock(end), NoSnapshots: true, Partitions: p, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		js := srv.JetStream()
		t0 := time.Now()
		futures := make([]jetstream.PubAckFuture, 0, len(msgs))
		for _, m := range msgs {
			f, err := js.PublishAsync(m.subject, m.data)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
		}
		var last uint64
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				last = max(last, ack.Sequence)
			case err := <-f.Err():
				b.Fatalf("publish: %v", err)
			}
		}
		if err := srv.WaitApplied(context.Background(), last); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		applied := func() uint64 {
			var n uint64
			for _, part := range srv.partitions() {
				n += part.engine.Status().Events
			}
			return n
		}
		if n := applied(); n != uint64(events) {
			var seqs []uint64
			for _, part := range srv.partitions() {
				seqs = append(seqs, part.segAPI.waiter.Last(), part.engine.Status().LastSeq)
			}
			b.Fatalf("P=%d applied %d events once WaitApplied(%d) returned, want %d (partitions' waiter and engine seqs %v)", p, n, last, events, seqs)
		}
		return d
	}
	configs := []struct {
		name  string
		p     int
		aware bool
	}{{"p1", 1, true}, {"p2", 2, true}, {"p4", 4, true}, {"p4-mixed", 4, false}}
	msgs := make([][]msg, len(configs))
	for i, c := range configs {
		msgs[i] = encode(c.p, c.aware)
	}
	took := make([]time.Duration, len(configs))
	for b.Loop() {
		for i, c := range configs {
			took[i] += run(c.p, msgs[i])
		}
	}
	rate := func(i int) float64 { return float64(events) * float64(b.N) / took[i].Seconds() }
	cores := runtime.GOMAXPROCS(0)
	b.ReportMetric(float64(events), "events")
	for i, c := range configs {
		b.ReportMetric(rate(i), c.name+"-events/s")
		if c.aware && c.p > 1 {
			b.ReportMetric(rate(i)/rate(0), fmt.Sprintf("p%d-x", c.p))
			b.ReportMetric(rate(i)/rate(0)/float64(min(c.p, cores)), fmt.Sprintf("p%d-core-eff", c.p))
		}
	}
	b.ReportMetric(rate(3)/rate(2), "mixed-x")
}
