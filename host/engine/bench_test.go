package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// benchRules are the example rules' kinds in a realistic mix: routed
// counts, where-filters and profile predicates.
const benchRules = `
segments:
  - {id: frequent_checkout, did: {event: checkout, count: ">= 3", last: 7d}}
  - {id: big_spenders, did: {event: pay, where: "(props.amount ?? 0) >= 1000", last: 30d}}
  - {id: heavy_browsers, did: {events: [page_view, search], count: ">= 50", last: 7d}}
  - {id: quiet, did: {event: page_view, count: "< 2", last: 7d}}
  - {id: offline, did: {event: campaign_join, where: props.channel == "offline", last: 30d}}
  - {id: young_men, profile: age < 25 && gender == "male"}
`

// shopBatches encodes the demo shop's stream as wire batches of size n.
func shopBatches(b *testing.B, n int) (batches [][]byte, events int, end time.Time) {
	end = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	g := shop.New(shop.Config{Seed: 1, Users: 2000, Start: end.AddDate(0, 0, -7), End: end})
	var items []any
	for it := range g.All() {
		items = append(items, it)
		if it.Event != "" {
			events++
		}
		if len(items) == n {
			data, err := json.Marshal(items)
			if err != nil {
				b.Fatal(err)
			}
			batches = append(batches, data)
			items = items[:0]
		}
	}
	return batches, events, end
}

// BenchmarkIngest measures segd's cost per item of the demo stream against
// a plain decode of the same batches (json.Unmarshal into []map[string]any)
// in the same run: decode-x is segd's wire decoder, apply-x the engine
// applying decoded batches to six rules, ingest-x the two together.
func BenchmarkIngest(b *testing.B) {
	batches, _, end := shopBatches(b, 1000)
	segs, err := rules.Compile([]rules.File{{Name: "bench.yaml", Data: []byte(benchRules)}}, rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	decoded := make([]rules.Batch, len(batches))
	items := 0
	for i, data := range batches {
		if decoded[i], err = bus.DecodeBatch(data, 0); err != nil {
			b.Fatal(err)
		}
		items += len(decoded[i].Events) + len(decoded[i].Profiles)
	}
	perItem := func(f func()) float64 {
		start, rounds := time.Now(), 0
		for rounds < 1 || time.Since(start) < 500*time.Millisecond {
			f()
			rounds++
		}
		return float64(time.Since(start).Nanoseconds()) / float64(rounds*items)
	}
	plainNs := perItem(func() {
		for _, data := range batches {
			var v []map[string]any
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	decodeNs := perItem(func() {
		for _, data := range batches {
			if _, err := bus.DecodeBatch(data, 0); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.ResetTimer()
	applied := 0
	for b.Loop() {
		b.StopTimer()
		e := New(Config{Segments: segs, Clock: NewManualClock(end.Add(-time.Minute))})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		b.StartTimer()
		for i := range decoded {
			if err := e.Apply(ctx, &ingest.Message{Seq: uint64(i + 1), Batch: decoded[i]}); err != nil {
				b.Fatal(err)
			}
		}
		applied += items
		b.StopTimer()
		cancel()
		<-done
		b.StartTimer()
	}
	applyNs := float64(b.Elapsed().Nanoseconds()) / float64(applied)
	b.ReportMetric(plainNs, "plain-ns/item")
	b.ReportMetric(decodeNs, "decode-ns/item")
	b.ReportMetric(applyNs, "apply-ns/item")
	b.ReportMetric(decodeNs/plainNs, "decode-x")
	b.ReportMetric(applyNs/plainNs, "apply-x")
	b.ReportMetric((decodeNs+applyNs)/plainNs, "ingest-x")
}
