package engine

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

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
//   - ns/event: Apply's cost per event (CPU time of the process), beside plain-ns/event, a routed
//     map[uint32]int32 counter per rule over the same events;
//   - eval-ns/user: the evaluate step's cost per rule and user, judging
//     every user again;
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
	// Batches are made one at a time, untimed, and dropped once applied,
	// as a consumer decodes and applies them: the collector does not scan
	// a million retained events.
	const batchSize = 1000
	batch := func(i int) rules.Batch {
		var bt rules.Batch
		for _, g := range evs[i:min(i+batchSize, len(evs))] {
			bt.Events = append(bt.Events, rules.Event{User: fmt.Sprintf("u%d", g.user), Name: fmt.Sprintf("e%d", g.name),
				Time: g.at, Props: map[string]any{"v": g.v}})
		}
		return bt
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
		start := cpuTime()
		for _, g := range evs {
			counters[g.name][uint32(g.user)]++
		}
		ns = float64(cpuTime()-start) / float64(len(evs))
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
				var took int64
				for i := 0; i < len(evs); i += batchSize {
					msg := &ingest.Message{Seq: uint64(i/batchSize + 1), Batch: batch(i)}
					start := cpuTime()
					if err := e.Apply(context.Background(), msg); err != nil {
						b.Fatal(err)
					}
					took += cpuTime() - start
				}
				ingestNs = float64(took) / float64(len(evs))
				stop()
				// Every rule judges every user again, as a step does the
				// users it touched.
				all := roaring.New()
				all.AddRange(0, uint64(e.users.size()))
				touched := map[leaf]*roaring.Bitmap{}
				for _, l := range e.leaves {
					touched[l] = all
				}
				start := cpuTime()
				e.evaluate(touched, nil, changeSet{})
				evalNs = float64(cpuTime()-start) / float64(e.users.size()*len(e.segments))
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

// cpuTime is the CPU time the process has used, in ns: the machine may be
// shared, and CPU time varies less with its load than elapsed time does.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
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
