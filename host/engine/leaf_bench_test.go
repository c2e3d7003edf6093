package engine

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// leafKinds are the rule kinds BenchmarkLeafState measures, each as a rule
// over event name %[1]s (the next name is %[2]s).
var leafKinds = []struct{ name, rule string }{
	{"count", `did: {event: %[1]s, count: ">= 3", last: 7d}`},
	{"sum", `did: {event: %[1]s, aggregate: sum(v), is: ">= 100", last: 7d}`},
	{"days", `did: {event: %[1]s, aggregate: days, is: ">= 2", last: 7d}`},
	{"distinct", `did: {event: %[1]s, aggregate: distinct(v), is: ">= 2", last: 7d}`},
	{"avg", `did: {event: %[1]s, aggregate: avg(v), is: ">= 20", last: 7d}`},
	{"count24h", `did: {event: %[1]s, count: ">= 2", last: 24h}`},
	{"sequence", `sequence: {steps: [{event: %[1]s}, {event: %[2]s}], within: 1h, last: 7d}`},
	{"then_not", `sequence: {steps: [{event: %[1]s}], then_not: {event: %[2]s}, within: 1h, last: 7d}`},
}

// BenchmarkLeafState builds the rule state of leafUsers users × leafRules
// rules of each kind from a generated stream (leafEvents events per user
// over the last 7 days, spread over leafRules event names, in time order as
// in a catch-up) and reports:
//   - ns/event: Apply's cost per event, beside plain-ns/event, a routed
//     map[uint32]int32 counter per rule over the same events;
//   - eval-ns/user: one rule's holds for one user with state;
//   - B/user/rule: the heap the rule state holds (HeapInuse with the state
//     minus without it, after a GC) per user with state per rule, beside
//     map-B/user/rule, the plain counters' heap, and raw-B/user/rule, the
//     retained events at 16 bytes each (time and value).
func BenchmarkLeafState(b *testing.B) {
	const leafUsers, leafRules, leafEvents = 50_000, 10, 20
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(5, 6))
	type gen struct {
		user, name int
		at         int64
		v          float64
	}
	evs := make([]gen, 0, leafUsers*leafEvents)
	for u := range leafUsers {
		for range leafEvents {
			evs = append(evs, gen{u, rng.IntN(leafRules), now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute).UnixMilli(), float64(rng.IntN(50))})
		}
	}
	// In time order, as a catch-up reads a stream.
	slices.SortFunc(evs, func(a, b gen) int { return cmp.Compare(a.at, b.at) })
	const batchSize = 1000
	var batches []rules.Batch
	for i := 0; i < len(evs); i += batchSize {
		var bt rules.Batch
		for _, g := range evs[i:min(i+batchSize, len(evs))] {
			bt.Events = append(bt.Events, rules.Event{User: fmt.Sprintf("u%d", g.user), Name: fmt.Sprintf("e%d", g.name),
				Time: g.at, Props: map[string]any{"v": g.v}})
		}
		batches = append(batches, bt)
	}

	// Baseline: a counter per rule and user, routed by event name,
	// measured beside each kind (the machine's load varies).
	var withState int
	plain := func() (ns, bytes float64) {
		h0 := heapInuse()
		counters := make([]map[uint32]int32, leafRules)
		for i := range counters {
			counters[i] = map[uint32]int32{}
		}
		start := time.Now()
		for _, g := range evs {
			counters[g.name][uint32(g.user)]++
		}
		ns = float64(time.Since(start).Nanoseconds()) / float64(len(evs))
		withState = 0
		for _, c := range counters {
			withState += len(c)
		}
		bytes = float64(heapInuse()-h0) / float64(withState)
		runtime.KeepAlive(counters)
		return ns, bytes
	}
	plain()
	raw := float64(len(evs)*16) / float64(withState)

	for _, kind := range leafKinds {
		b.Run(kind.name, func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("segments:\n")
			for r := range leafRules {
				fmt.Fprintf(&sb, "  - {id: r%d, %s}\n", r, fmt.Sprintf(kind.rule, fmt.Sprintf("e%d", r), fmt.Sprintf("e%d", (r+1)%leafRules)))
			}
			var ingestNs, evalNs, stateBytes, plainNs, mapBytes float64
			for b.Loop() {
				b.StopTimer()
				plainNs, mapBytes = plain()
				e, stop := runEngine(b, sb.String(), NewManualClock(now))
				runtime.GC()
				start := time.Now()
				for i := range batches {
					if err := e.Apply(context.Background(), &ingest.Message{Seq: uint64(i + 1), Batch: batches[i]}); err != nil {
						b.Fatal(err)
					}
				}
				ingestNs = float64(time.Since(start).Nanoseconds()) / float64(len(evs))
				stop()
				start = time.Now()
				n := 0
				for _, s := range e.segments {
					for u := range uint32(e.users.size()) {
						s.tree.holds(u, now.UnixMilli(), nil)
						n++
					}
				}
				evalNs = float64(time.Since(start).Nanoseconds()) / float64(n)
				with := heapInuse()
				for _, l := range e.leaves {
					resetLeaf(l)
				}
				stateBytes = float64(with-heapInuse()) / float64(withState)
				runtime.KeepAlive(e)
				b.StartTimer()
			}
			b.ReportMetric(ingestNs, "ns/event")
			b.ReportMetric(plainNs, "plain-ns/event")
			b.ReportMetric(ingestNs/plainNs, "x-plain")
			b.ReportMetric(evalNs, "eval-ns/user")
			b.ReportMetric(stateBytes, "B/user/rule")
			b.ReportMetric(mapBytes, "map-B/user/rule")
			b.ReportMetric(stateBytes/mapBytes, "x-map")
			b.ReportMetric(raw, "raw-B/user/rule")
		})
	}
}

// heapInuse is the heap in use after a full collection.
func heapInuse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// resetLeaf drops a leaf's state, as if it had seen nothing.
func resetLeaf(l leaf) {
	switch l := l.(type) {
	case *didLeaf:
		*l = *newDidLeaf(l.cond, l.loc, l.limits)
	case *seqLeaf:
		*l = *newSeqLeaf(l.cond, l.loc)
	}
}
