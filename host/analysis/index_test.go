package analysis_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/internal/analysisref"
	"github.com/segd/segd/rules"
)

var names = []string{"a", "b", "c", "d"}

// genEvents makes events of nUsers users between two dates, many of them
// near midnight and at the same millisecond, in random order.
func genEvents(rng *rand.Rand, loc *time.Location, from time.Time, days, nUsers, n int) ([]rules.Event, []uint32) {
	events := make([]rules.Event, n)
	ids := make([]uint32, n)
	for i := range events {
		u := uint32(rng.IntN(nUsers))
		day := from.AddDate(0, 0, rng.IntN(days))
		hour := []int{0, 0, 1, 2, 3, 12, 22, 23, 23}[rng.IntN(9)]
		t := time.Date(day.Year(), day.Month(), day.Day(), hour, rng.IntN(60), 0, 0, loc).UnixMilli()
		if rng.IntN(2) == 0 {
			t += rng.Int64N(60_000)
		}
		e := rules.Event{User: fmt.Sprintf("u%d", u), Name: names[rng.IntN(len(names))], Time: t}
		if rng.IntN(3) > 0 {
			e.Props = map[string]any{"amount": float64(rng.IntN(400)) * 0.25, "label": "x"}
		}
		events[i], ids[i] = e, u
	}
	return events, ids
}

func TestIndexMatchesReference(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "Asia/Shanghai", "America/New_York"} {
		t.Run(zone, func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(zone)
			if err != nil {
				t.Fatal(err)
			}
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			// New York leaves daylight saving time on 2026-11-01.
			start := time.Date(2026, 10, 18, 0, 0, 0, 0, loc)
			final := time.Date(2026, 11, 9, 12, 0, 0, 0, loc)
			var now atomic.Int64
			now.Store(final.AddDate(0, 0, -2).UnixMilli())
			const keep = 20
			ix := analysis.New(analysis.Config{Location: loc, Days: keep, Now: func() time.Time { return time.UnixMilli(now.Load()) }})
			const nUsers = 120
			events, ids := genEvents(rng, loc, start, 24, nUsers, 8000)

			// Readers query while the writer feeds batches; the clock moves
			// two days on the way, expiring what falls out of the history.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ix.Funnel(analysis.FunnelQuery{Steps: []analysis.Step{{Event: "a"}, {Event: "b"}}, Window: time.Hour,
						From: analysis.DayIn(start, loc), To: analysis.DayIn(final, loc), Segments: []analysis.Segment{{ID: "*"}}})
					ix.Events(analysis.EventsQuery{Events: names, Measures: []api.Measure{{Kind: "total", Name: "total"}},
						From: analysis.DayIn(start, loc), To: analysis.DayIn(final, loc), Segments: []analysis.Segment{{ID: "*"}}})
				}
			}()
			for i := 0; i < len(events); {
				n := min(len(events)-i, 1+rng.IntN(400))
				ix.ObserveEvents(slices.Clone(events[i:i+n]), slices.Clone(ids[i:i+n]))
				i += n
				if i > len(events)/2 && now.Load() < final.UnixMilli() {
					now.Store(final.UnixMilli())
				}
			}
			close(stop)
			wg.Wait()

			ref := &analysisref.Raw{Events: events, IDs: ids, Loc: loc, Now: final, Days: keep}
			segs, ins := randomSegments(rng, nUsers)
			day := func(off int) (analysis.Day, string) {
				d := start.AddDate(0, 0, off)
				return analysis.DayIn(d, loc), d.Format(time.DateOnly)
			}
			for round := range 6 {
				fo := rng.IntN(23)
				from, fromS := day(fo)
				to, toS := day(fo + rng.IntN(24-fo))

				// events
				var measures []api.Measure
				for _, m := range []string{"uniques", "total", "sum:amount", "sum:label", "at_least:2", "at_least:3"} {
					pm, err := api.ParseMeasure(m)
					if err != nil {
						t.Fatal(err)
					}
					measures = append(measures, pm)
				}
				reply := ix.Events(analysis.EventsQuery{Events: append(names, "nope"), Measures: measures, From: from, To: to, Segments: segs})
				if want := analysisref.Dates(fromS, toS); !slices.Equal(reply.Days, want) {
					t.Fatalf("days %v, want %v", reply.Days, want)
				}
				for _, s := range reply.Series {
					want := ref.EventSeries(ins[s.Segment], s.Event, s.Measure, fromS, toS)
					if !slices.Equal(s.Values, want) {
						t.Fatalf("round %d events %s %s %s %s..%s:\n got %v\nwant %v", round, s.Segment, s.Event, s.Measure, fromS, toS, s.Values, want)
					}
				}

				// funnels, in every mode
				steps := make([]string, 1+rng.IntN(4))
				for i := range steps {
					steps[i] = names[rng.IntN(len(names))]
				}
				window := []time.Duration{time.Minute, time.Hour, 25 * time.Hour, 7 * 24 * time.Hour}[rng.IntN(4)]
				var qs []analysis.Step
				for _, s := range steps {
					qs = append(qs, analysis.Step{Event: s})
				}
				for mode := analysis.FunnelMode(0); mode < 8; mode++ {
					got := ix.Funnel(analysis.FunnelQuery{Steps: qs, Window: window, From: from, To: to, Mode: mode, Segments: segs})
					for _, g := range got {
						want := ref.Funnel(ins[g.Segment], steps, window, mode&analysis.StrictOrder != 0,
							mode&analysis.StrictDeduplication != 0, mode&analysis.StrictIncrease != 0, fromS, toS)
						for k := range want {
							if g.Steps[k].Users != want[k] {
								t.Fatalf("round %d funnel %v window %s mode %s %s..%s segment %s: got %+v, want %v",
									round, steps, window, mode, fromS, toS, g.Segment, g.Steps, want)
							}
						}
					}
				}

				// retention, both modes
				startEv, retEv := names[rng.IntN(4)], names[rng.IntN(4)]
				days := 1 + rng.IntN(10)
				for _, recurring := range []bool{false, true} {
					got := ix.Retention(analysis.RetentionQuery{StartEvent: startEv, ReturnEvent: retEv, From: from, To: to,
						Days: days, Recurring: recurring, Segments: segs})
					for _, g := range got {
						sizes, retained, cds := ref.Retention(ins[g.Segment], startEv, retEv, fromS, toS, days, recurring)
						if len(g.Cohorts) != len(sizes) {
							t.Fatalf("retention: %d cohorts, want %d", len(g.Cohorts), len(sizes))
						}
						for i, c := range g.Cohorts {
							if c.Day != cds[i] || c.Size != sizes[i] || !slices.Equal(c.Retained, retained[i]) {
								t.Fatalf("round %d retention %s→%s recurring=%v days %d segment %s cohort %s: got %+v, want size %d %v",
									round, startEv, retEv, recurring, days, g.Segment, cds[i], c, sizes[i], retained[i])
							}
						}
					}
				}
			}
		})
	}
}

// randomSegments returns the baseline and two random segments, as the index
// and the reference take them.
func randomSegments(rng *rand.Rand, nUsers int) ([]analysis.Segment, map[string]func(uint32) bool) {
	segs := []analysis.Segment{{ID: "*"}}
	ins := map[string]func(uint32) bool{"*": func(uint32) bool { return true }}
	for _, name := range []string{"half", "tenth"} {
		member := make([]bool, nUsers)
		bm := roaring.New()
		for u := range member {
			if (name == "half" && rng.IntN(2) == 0) || (name == "tenth" && rng.IntN(10) == 0) {
				member[u] = true
				bm.Add(uint32(u))
			}
		}
		segs = append(segs, analysis.Segment{ID: name, Users: bm})
		ins[name] = func(u uint32) bool { return int(u) < len(member) && member[u] }
	}
	return segs, ins
}

// TestEventNameDictionaryFull: past MaxEvents names, events with a new
// name are not indexed, but counted, described and logged once a minute;
// named predicates ("@ID") are indexed whatever producers sent.
func TestEventNameDictionaryFull(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var logs lockedBuffer
	ix := analysis.New(analysis.Config{Now: func() time.Time { return now }, MaxEvents: 2,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ev := func(name string) rules.Event { return rules.Event{User: "u", Name: name, Time: now.UnixMilli()} }
	ix.ObserveEvents([]rules.Event{ev("a"), ev("b"), ev("c"), ev("@paid"), ev("a"), ev("d")}, []uint32{0, 0, 0, 0, 1, 1})
	st := ix.Stats()
	if st.Events != 4 || st.Dropped != 2 || !strings.Contains(st.FirstDropped, `"c"`) || !strings.Contains(st.FirstDropped, "full (2 names)") {
		t.Errorf("stats %+v", st)
	}
	if got := ix.EventNames(); !slices.Equal(got, []string{"@paid", "a", "b"}) {
		t.Errorf("names %v", got)
	}
	if n := strings.Count(logs.String(), "dictionary is full"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
