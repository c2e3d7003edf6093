package host

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/rules"
)

// BenchmarkAnalysisCapture measures the analysis index's share of a
// snapshot pause: WriteState runs on the writer during the capture.
// SEGD_BENCH_USERS users (default 1M) with eight events each over 7 days,
// 10 event names; the baseline (pause-x) is the time the index took to
// index the same events.
func BenchmarkAnalysisCapture(b *testing.B) {
	users := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("SEGD_BENCH_USERS")); err == nil && n > 0 {
		users = n
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ix := analysis.New(analysis.Config{Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(1, 1))
	events := make([]rules.Event, 0, 10_000)
	ids := make([]uint32, 0, 10_000)
	t0 := time.Now()
	for i := range 8 * users {
		u := rng.IntN(users)
		events = append(events, rules.Event{User: fmt.Sprintf("user-%07d", u), Name: fmt.Sprintf("e%02d", rng.IntN(10)),
			Time: now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute).UnixMilli(), Props: map[string]any{"v": float64(rng.IntN(50))}})
		ids = append(ids, uint32(u))
		if len(events) == cap(events) || i == 8*users-1 {
			ix.ObserveEvents(events, ids)
			events, ids = events[:0], ids[:0]
		}
	}
	build := time.Since(t0)
	var pause time.Duration
	var size int
	for b.Loop() {
		w := &snapio.Writer{}
		t0 := time.Now()
		if err := ix.WriteState(w); err != nil {
			b.Fatal(err)
		}
		pause += time.Since(t0)
		size = len(w.Buf)
	}
	b.ReportMetric(pause.Seconds()/float64(b.N), "pause-s")
	b.ReportMetric(pause.Seconds()/float64(b.N)/build.Seconds(), "pause-x")
	b.ReportMetric(build.Seconds(), "index-s")
	b.ReportMetric(float64(size)/1e6, "MB")
}
