package scatter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
	"github.com/segd/segd/setexpr"
)

// benchUsers users with benchEvents events each over two weeks, loaded
// once into one engine and into four partitions.
const (
	benchUsers  = 40_000
	benchEvents = 8
)

var (
	benchOnce     sync.Once
	benchClusters map[int]*cluster
)

// benchData returns the clusters of 1 and 4 partitions holding the same
// events. They live for the whole run (their engines' goroutines are
// left to the process's end, which is when benchmarks end).
func benchData(b *testing.B) map[int]*cluster {
	benchOnce.Do(func() {
		clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
		keep := &keeper{}
		benchClusters = map[int]*cluster{1: newCluster(keep, 1, time.UTC, clock), 4: newCluster(keep, 4, time.UTC, clock)}
		rng := rand.New(rand.NewPCG(1, 2))
		var batch rules.Batch
		flush := func() {
			for _, c := range benchClusters {
				c.apply(keep, &ingest.Message{Batch: batch})
			}
			batch = rules.Batch{}
		}
		for u := range benchUsers {
			user := fmt.Sprintf("user-%d", u)
			for range benchEvents {
				at := clock.Now().Add(-time.Duration(rng.IntN(14*24*60)) * time.Minute)
				batch.Events = append(batch.Events, rules.Event{User: user, Name: testEventNames[rng.IntN(4)], Time: at.UnixMilli(),
					Props: map[string]any{"amount": float64(rng.IntN(80)) * 0.5}})
			}
			if len(batch.Events) >= 4000 {
				flush()
			}
		}
		flush()
		if keep.failed != "" {
			panic(keep.failed)
		}
	})
	return benchClusters
}

// keeper is the testing.TB of the clusters shared by benchmarks: their
// engines run until the process ends.
type keeper struct {
	testing.TB
	failed string
}

func (k *keeper) Helper()        {}
func (k *keeper) Cleanup(func()) {}
func (k *keeper) Fatal(a ...any) { k.failed = fmt.Sprint(a...); panic(k.failed) }
func (k *keeper) Fatalf(f string, a ...any) {
	k.failed = fmt.Sprintf(f, a...)
	panic(k.failed)
}

// BenchmarkSegmentCount: segment.count over one engine (P=1, the
// baseline) and merged over four partitions (P=4).
func BenchmarkSegmentCount(b *testing.B) {
	cs := benchData(b)
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("P=%d", n), func(b *testing.B) {
			s := cs[n].s
			for b.Loop() {
				if _, err := s.SegmentCount("no_pay_3d"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFunnel: a three-step funnel over two weeks with a segment,
// P=1 against P=4.
func BenchmarkFunnel(b *testing.B) {
	cs := benchData(b)
	r := &api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "page_view"}, {Event: "checkout"}, {Event: "pay"}},
		Window: "3d", From: "2026-11-07", To: "2026-11-20", Segments: []string{"no_pay_3d"}}
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("P=%d", n), func(b *testing.B) {
			s := cs[n].s
			for b.Loop() {
				if _, err := s.AnalyzeFunnel(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSegmentQuery: set algebra with negation, P=1 (one engine's
// bitmaps and setexpr, as bus does it) against P=4 (SegmentQuery).
func BenchmarkSegmentQuery(b *testing.B) {
	cs := benchData(b)
	q, err := setexpr.Parse("!no_pay_3d | rare_visitor_3d")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("P=%d", n), func(b *testing.B) {
			s := cs[n].s
			for b.Loop() {
				if _, err := s.SegmentQuery(context.Background(), q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSegmentPage: one page of 1000 members, P=1 against P=4 (which
// reads up to 1000 from each partition and keeps the smallest).
func BenchmarkSegmentPage(b *testing.B) {
	cs := benchData(b)
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("P=%d", n), func(b *testing.B) {
			s := cs[n].s
			for b.Loop() {
				ids, _, err := s.SegmentPage("no_pay_3d", 0, 1000)
				if err != nil || len(ids) != 1000 {
					b.Fatal(len(ids), err)
				}
				if _, err := s.UserNames(ids); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
