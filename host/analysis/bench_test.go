package analysis_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/internal/analysisref"
	"github.com/segd/segd/rules"
)

// The benchmark dataset: 1M users over 30 days and 20 event types, built
// once for every benchmark of the package (only when benchmarks run).
const (
	benchUsers  = 1_000_000
	benchDays   = 30
	benchEvents = 20
)

type benchData struct {
	ix       *analysis.Index
	ref      *analysisref.Raw
	segs     []analysis.Segment // all users, then 10%, 30% and 50% of users
	ins      map[string]func(uint32) bool
	from, to analysis.Day
	fromS    string
	toS      string
	build    time.Duration
	mem      analysis.Memory
}

var (
	benchOnce sync.Once
	bench     *benchData
)

// benchDataset generates the events day by day, in time order within a
// day: each user is active on a day with a probability that depends on
// the user (3%, 10% or 40%) and does 1-4 events then, the funnel's events
// e00..e03 more often than the others.
func benchDataset(b *testing.B) *benchData {
	benchOnce.Do(func() {
		loc := time.UTC
		start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
		now := start.AddDate(0, 0, benchDays-1).Add(23 * time.Hour)
		rng := rand.New(rand.NewPCG(1, 2))
		userNames := make([]string, benchUsers)
		rate := make([]uint8, benchUsers)
		for u := range userNames {
			userNames[u] = fmt.Sprintf("u%07d", u)
			rate[u] = []uint8{3, 10, 40}[rng.IntN(3)]
		}
		names := make([]string, benchEvents)
		for i := range names {
			names[i] = fmt.Sprintf("e%02d", i)
		}
		var events []rules.Event
		var ids []uint32
		for d := range benchDays {
			dayStart := start.AddDate(0, 0, d).UnixMilli()
			first := len(events)
			for u := range benchUsers {
				if rng.IntN(100) >= int(rate[u]) {
					continue
				}
				for range 1 + rng.IntN(4) {
					ev := rng.IntN(benchEvents + 8)
					if ev >= benchEvents {
						ev -= benchEvents // e00..e07 twice as likely
					}
					events = append(events, rules.Event{User: userNames[u], Name: names[ev], Time: dayStart + rng.Int64N(86_400_000)})
					ids = append(ids, uint32(u))
				}
			}
			day := events[first:]
			dayIDs := ids[first:]
			perm := make([]int, len(day))
			for i := range perm {
				perm[i] = i
			}
			slices.SortFunc(perm, func(a, b int) int { return int(day[a].Time - day[b].Time) })
			sortedEv := make([]rules.Event, len(day))
			sortedID := make([]uint32, len(day))
			for i, p := range perm {
				sortedEv[i], sortedID[i] = day[p], dayIDs[p]
			}
			copy(day, sortedEv)
			copy(dayIDs, sortedID)
		}
		d := &benchData{ref: &analysisref.Raw{Events: events, IDs: ids, Loc: loc, Now: now, Days: analysis.DefaultDays}}
		d.ix = analysis.New(analysis.Config{Location: loc, Now: func() time.Time { return now }})
		runtime.GC()
		t0 := time.Now()
		for i := 0; i < len(events); i += 10_000 {
			j := min(i+10_000, len(events))
			d.ix.ObserveEvents(events[i:j], ids[i:j])
		}
		d.ix.Sync()
		d.build = time.Since(t0)
		d.mem = d.ix.Memory()
		d.segs = []analysis.Segment{{ID: api.AllUsers}}
		d.ins = map[string]func(uint32) bool{api.AllUsers: func(uint32) bool { return true }}
		for _, pct := range []int{10, 30, 50} {
			bm := roaring.New()
			for u := range benchUsers {
				if rng.IntN(100) < pct {
					bm.Add(uint32(u))
				}
			}
			name := fmt.Sprintf("p%d", pct)
			d.segs = append(d.segs, analysis.Segment{ID: name, Users: bm})
			d.ins[name] = bm.Contains
		}
		d.from, d.to = analysis.DayIn(start, loc), analysis.DayIn(now, loc)
		d.fromS, d.toS = d.from.String(), d.to.String()
		bench = d
	})
	return bench
}

// BenchmarkBuild reports the dataset, the time to index it and the index's
// memory per user and per event.
func BenchmarkBuild(b *testing.B) {
	d := benchDataset(b)
	for b.Loop() {
	}
	n := float64(len(d.ref.Events))
	b.ReportMetric(n, "events")
	b.ReportMetric(float64(d.build.Nanoseconds())/n, "ns/event-indexed")
	b.ReportMetric(float64(d.mem.Total())/(1<<20), "index-MiB")
	b.ReportMetric(float64(d.mem.Presence)/n, "presence-B/event")
	b.ReportMetric(float64(d.mem.Counts)/n, "counts-B/event")
	b.ReportMetric(float64(d.mem.Timelines)/n, "timeline-B/event")
	b.ReportMetric(float64(d.mem.PerUser)/benchUsers, "fixed-B/user")
	b.ReportMetric(float64(d.mem.Total())/benchUsers, "total-B/user")
}

// sides are the benchmarks' segment sets: one segment, and three side by
// side (the all-users baseline is always there too).
var sides = []struct {
	name string
	n    int
}{{"1-segment", 2}, {"3-segments", 4}}

// refRatio times the reference once and reports its time and the index's
// speed-up, after checking that both gave the same answer.
func refRatio(b *testing.B, ref func() bool) {
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	t0 := time.Now()
	if !ref() {
		b.Fatal("the index and the reference disagree")
	}
	took := time.Since(t0)
	b.ReportMetric(took.Seconds()*1000, "ref-ms")
	b.ReportMetric(float64(took)/float64(per), "x-vs-ref")
}

func BenchmarkRetention30d(b *testing.B) {
	d := benchDataset(b)
	for _, side := range sides {
		b.Run(side.name, func(b *testing.B) {
			q := analysis.RetentionQuery{StartEvent: "e00", ReturnEvent: "e01", From: d.from, To: d.to, Days: 30, Segments: d.segs[:side.n]}
			b.ReportAllocs()
			var got []api.RetentionSegment
			for b.Loop() {
				got = d.ix.Retention(q)
			}
			refRatio(b, func() bool {
				for _, g := range got {
					sizes, retained, _ := d.ref.Retention(d.ins[g.Segment], "e00", "e01", d.fromS, d.toS, 30, false)
					for i, c := range g.Cohorts {
						if c.Size != sizes[i] || !slices.Equal(c.Retained, retained[i]) {
							return false
						}
					}
				}
				return true
			})
		})
	}
}

func BenchmarkFunnel4Steps7d(b *testing.B) {
	d := benchDataset(b)
	steps := []string{"e00", "e01", "e02", "e03"}
	for _, side := range sides {
		b.Run(side.name, func(b *testing.B) {
			q := analysis.FunnelQuery{Window: 7 * 24 * time.Hour, From: d.from, To: d.to, Segments: d.segs[:side.n]}
			for _, s := range steps {
				q.Steps = append(q.Steps, analysis.Step{Event: s})
			}
			b.ReportAllocs()
			var got []api.FunnelSegment
			for b.Loop() {
				got = d.ix.Funnel(q)
			}
			refRatio(b, func() bool {
				for _, g := range got {
					want := d.ref.Funnel(d.ins[g.Segment], steps, q.Window, false, false, false, d.fromS, d.toS)
					for k := range want {
						if g.Steps[k].Users != want[k] {
							return false
						}
					}
				}
				return true
			})
		})
	}
}

func BenchmarkEvents30d(b *testing.B) {
	d := benchDataset(b)
	events := []string{"e00", "e05", "e10"}
	var measures []api.Measure
	for _, m := range []string{"uniques", "total", "at_least:2"} {
		pm, _ := api.ParseMeasure(m)
		measures = append(measures, pm)
	}
	for _, side := range sides {
		b.Run(side.name, func(b *testing.B) {
			q := analysis.EventsQuery{Events: events, Measures: measures, From: d.from, To: d.to, Segments: d.segs[:side.n]}
			b.ReportAllocs()
			var got *api.AnalysisEventsReply
			for b.Loop() {
				got = d.ix.Events(q)
			}
			refRatio(b, func() bool {
				for _, s := range got.Series {
					if !slices.Equal(s.Values, d.ref.EventSeries(d.ins[s.Segment], s.Event, s.Measure, d.fromS, d.toS)) {
						return false
					}
				}
				return true
			})
		})
	}
}
