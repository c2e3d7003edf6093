package engine

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// ingestBenchRules is the 100-rule set of `segd bench ingest`
// (internal/ingestbench.RulesYAML(100, false), written out again here: that
// package imports the host, which imports this one). Five kinds of 20
// rules, kind i/20 mod 5 over event e(i mod 20): a count over 7 days, a
// where over 30 days, a zero-or-one count over 14 days, a count over two
// names and a where on a string over 7 days.
func ingestBenchRules() (string, func(id string) string) {
	var sb strings.Builder
	sb.WriteString("segments:\n")
	kinds := make([]string, 100)
	for i := range 100 {
		ev := fmt.Sprintf("e%02d", i%20)
		id := fmt.Sprintf("r%03d_%s", i, ev)
		switch (i / 20) % 5 {
		case 0:
			kinds[i] = "count7d"
			fmt.Fprintf(&sb, "  - {id: %s, did: {event: %s, count: \">= %d\", last: 7d}}\n", id, ev, 1+i%3)
		case 1:
			kinds[i] = "where30d"
			fmt.Fprintf(&sb, "  - {id: %s, did: {event: %s, where: \"(props.amount ?? 0) >= %d\", last: 30d}}\n", id, ev, 500+10*i)
		case 2:
			kinds[i] = "fewer14d"
			fmt.Fprintf(&sb, "  - {id: %s, did: {event: %s, count: \"< 2\", last: 14d}}\n", id, ev)
		case 3:
			kinds[i] = "twonames7d"
			fmt.Fprintf(&sb, "  - {id: %s, did: {events: [%s, e%02d], count: \">= 3\", last: 7d}}\n", id, ev, (i+7)%20)
		default:
			kinds[i] = "wherestr7d"
			fmt.Fprintf(&sb, "  - {id: %s, did: {event: %s, where: props.channel == \"web\", last: 7d}}\n", id, ev)
		}
	}
	return sb.String(), func(id string) string {
		i, _ := strconv.Atoi(id[1:4])
		return kinds[i]
	}
}

// mixedRules is hundredRules (counts, sums, days, sequences, drop-offs)
// with the kind of a segment by its id.
func mixedRules() (string, func(id string) string) {
	kinds := map[byte]string{'c': "count7d", 's': "sum30d", 'd': "days14d", 'q': "sequence7d", 'x': "didnot24h"}
	return hundredRules(), func(id string) string { return kinds[id[0]] }
}

// BenchmarkRuleState100 builds the state of 100 rules over a stream shaped
// as `segd bench ingest`'s (its users, 10.65 events a user over 14 days,
// 40% of them e00 and the rest spread over e01 … e19, in time order) and
// reports the heap it holds per user, taking each part away in turn (the
// live heap, HeapAlloc after a GC, before minus after: HeapInuse would
// credit a part only with the spans it alone held):
//   - <kind>-B/user/rule: the leaves of the rules of that kind, per user
//     (every user, with state or not) and rule;
//   - leaves-B/user, since-B/user, members-B/user: all the leaves, the
//     segments' since entries and their member bitmaps; members/user, the
//     segments a user is in on average, and since-B/member;
//   - state-GB-at-10M: the three together, scaled linearly to 10M users
//     with the same 100 rules: (leaves + since + members) / users × 10M, and
//     x-2GB, that against the 2 GB target;
//   - inuse-x-live: the heap in use the parts freed (HeapInuse) over their
//     live bytes: the spans they held partly (fragmentation), on top.
//
// SEGD_BENCH_HEAPPROFILE=DIR writes a heap profile of each set's built
// state to DIR/<set>.heap (go tool pprof -sample_index=inuse_space).
//
// Two rule sets: ingestbench (the ingest bench's 100 rules: counts and
// wheres) and mixed (hundredRules: counts, sums, days, sequences,
// drop-offs). SEGD_BENCH_USERS sets the users (default 1M: about two
// minutes a set on a loaded 2-core machine); run with -benchtime 1x.
func BenchmarkRuleState100(b *testing.B) {
	users := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("SEGD_BENCH_USERS")); err == nil && n > 0 {
		users = n
	}
	events := users * 1065 / 100
	end := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	start := end.AddDate(0, 0, -14).UnixMilli()
	span := end.UnixMilli() - start
	channels := [...]string{"web", "app", "store", "partner"}
	for _, set := range []struct {
		name  string
		rules func() (string, func(id string) string)
	}{{"ingestbench", ingestBenchRules}, {"mixed", mixedRules}} {
		b.Run(set.name, func(b *testing.B) {
			src, kindOf := set.rules()
			metrics := map[string]float64{}
			for b.Loop() {
				b.StopTimer()
				h0 := heapInuse()
				e, stop := runEngine(b, src, NewManualClock(end))
				rng := rand.New(rand.NewPCG(1, 0x5e6d))
				const batchSize = 1000
				seq := uint64(0)
				for i := 0; i < events; i += batchSize {
					var bt rules.Batch
					for j := i; j < min(i+batchSize, events); j++ {
						name := 0
						if rng.IntN(10) >= 4 {
							name = 1 + rng.IntN(19)
						}
						t := start + int64(float64(j)/float64(events)*float64(span)) + rng.Int64N(120000) - 60000
						t = max(start, min(t, start+span-1))
						amount := rng.IntN(2000)
						bt.Events = append(bt.Events, rules.Event{User: fmt.Sprintf("u%07d", rng.IntN(users)),
							Name: fmt.Sprintf("e%02d", name), Time: t,
							Props: map[string]any{"amount": float64(amount), "v": float64(amount % 50), "channel": channels[rng.IntN(len(channels))]}})
					}
					seq++
					if err := e.Apply(b.Context(), &ingest.Message{Seq: seq, Batch: bt}); err != nil {
						b.Fatal(err)
					}
				}
				stop()
				n := float64(e.users.size())
				total := heapInuse()
				metrics["engine-B/user"] = float64(total-h0) / n
				if dir := os.Getenv("SEGD_BENCH_HEAPPROFILE"); dir != "" {
					writeHeapProfile(b, filepath.Join(dir, set.name+".heap"))
				}
				if os.Getenv("SEGD_DEBUG_SEQ") != "" {
					var ln, cp, used, garbage, recs, times, users int
					for _, l := range e.leaves {
						if q, ok := l.(*seqLeaf); ok {
							st := &q.times
							ln, cp, garbage = ln+len(st.arena), cp+cap(st.arena), garbage+st.garbage
							recs += len(st.chunks) * recChunkSize
							for _, c := range st.chunks {
								for _, r := range c.recs {
									if r.cap != 0 {
										users++
										u := st.used(r)
										used += u
										times += u - st.head
									}
								}
							}
						}
					}
					b.Logf("arena len %d cap %d used %d garbage %d times %d users %d recs %d", ln, cp, used, garbage, times, users, recs)
				}
				// Each kind's leaves, then the memberships.
				byKind := map[string][]*segmentState{}
				for _, s := range e.segments {
					k := kindOf(s.seg.ID)
					byKind[k] = append(byKind[k], s)
				}
				var leaves, since, members float64
				for _, k := range slices.Sorted(maps.Keys(byKind)) {
					h := heapAlloc()
					for _, s := range byKind[k] {
						for _, l := range s.leaves {
							resetLeaf(l)
						}
					}
					d := float64(h - heapAlloc())
					leaves += d
					metrics[k+"-B/user/rule"] = d / n / float64(len(byKind[k]))
				}
				var card uint64
				for _, s := range e.segments {
					card += s.members.GetCardinality()
				}
				h := heapAlloc()
				for _, s := range e.segments {
					s.since = idMap{}
				}
				since = float64(h - heapAlloc())
				h = heapAlloc()
				for _, s := range e.segments {
					s.members, s.view = roaring.New(), nil
				}
				members = float64(h - heapAlloc())
				// What the heap held beyond the live objects of the parts
				// (spans partly in use), shared out in proportion.
				frag := float64(total-heapInuse()) / (leaves + since + members)
				runtime.KeepAlive(e)
				metrics["leaves-B/user"] = leaves / n
				metrics["since-B/user"] = since / n
				metrics["since-B/member"] = since / float64(card)
				metrics["members/user"] = float64(card) / n
				metrics["members-B/user"] = members / n
				gb := (leaves + since + members) / n * 10_000_000 / 1e9
				metrics["state-GB-at-10M"] = gb
				metrics["x-2GB"] = gb / 2
				metrics["inuse-x-live"] = frag
				b.StartTimer()
			}
			for k, v := range metrics {
				b.ReportMetric(v, k)
			}
		})
	}
}

// writeHeapProfile writes the heap profile (after a collection) to path.
func writeHeapProfile(b *testing.B, path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// heapAlloc is the live heap after a full collection.
func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
