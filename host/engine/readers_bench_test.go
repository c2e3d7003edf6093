package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// loadedEngine is an engine holding users users (a profile each, eight
// events each over 7 days) and the 50 rules of fiftyRules, with live
// batches of 10,000 events ready to apply on top.
type loadedEngine struct {
	e      *Engine
	ctx    context.Context
	live   []rules.Batch
	seq    atomic.Uint64
	next   atomic.Int64
	users  int
	name   func(int) string
	stop   func()
	buildS float64
}

// benchUsers is the number of users of the reader benchmarks:
// SEGD_BENCH_USERS, or 200,000 (a million takes minutes to build on a
// 2-core machine).
func benchUsers() int {
	if n, err := strconv.Atoi(os.Getenv("SEGD_BENCH_USERS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}

func loadEngine(b *testing.B, users int) *loadedEngine {
	b.Helper()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs, err := rules.Compile([]rules.File{{Name: "fifty.yaml", Data: []byte(fiftyRules())}}, rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	le := &loadedEngine{e: e, ctx: ctx, users: users, stop: func() { cancel(); <-done },
		name: func(u int) string { return fmt.Sprintf("user-%07d", u) }}
	rng := rand.New(rand.NewPCG(1, 1))
	var batch rules.Batch
	flush := func() {
		if err := e.Apply(ctx, &ingest.Message{Seq: le.seq.Add(1), Batch: batch}); err != nil {
			b.Fatal(err)
		}
		batch = rules.Batch{}
	}
	event := func() rules.Event {
		return rules.Event{User: le.name(rng.IntN(users)), Name: fmt.Sprintf("e%02d", rng.IntN(10)),
			Time: now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute).UnixMilli(), Props: map[string]any{"v": float64(rng.IntN(50))}}
	}
	t0 := time.Now()
	for u := range users {
		batch.Profiles = append(batch.Profiles, rules.ProfileUpdate{User: le.name(u), Attrs: map[string]any{"age": float64(15 + u%20)}})
		if len(batch.Profiles) == 10_000 {
			flush()
		}
	}
	for i := range 8 * users {
		batch.Events = append(batch.Events, event())
		if len(batch.Events) == 10_000 || i == 8*users-1 {
			flush()
		}
	}
	le.buildS = time.Since(t0).Seconds()
	le.live = make([]rules.Batch, 20)
	for i := range le.live {
		for range 10_000 {
			le.live[i].Events = append(le.live[i].Events, event())
		}
	}
	return le
}

// applyLive applies the next live batch of 10,000 events.
func (le *loadedEngine) applyLive(b *testing.B) {
	i := le.next.Add(1)
	if err := le.e.Apply(le.ctx, &ingest.Message{Seq: le.seq.Add(1), Batch: le.live[int(i)%len(le.live)]}); err != nil && le.ctx.Err() == nil {
		b.Error(err)
	}
}

// snapshot captures and encodes the state as the host does: the capture in
// a pause of the writer, the encoding while ingest goes on. It returns the
// pause and the encoding time.
func (le *loadedEngine) snapshot(b *testing.B) (pause, encode time.Duration, size int) {
	t0 := time.Now()
	var c *Capture
	if err := le.e.Do(le.ctx, func() (err error) { c, err = le.e.Capture(); return err }); err != nil {
		b.Fatal(err)
	}
	pause = time.Since(t0)
	t0 = time.Now()
	w := &snapio.Writer{}
	if err := c.Encode(w); err != nil {
		b.Fatal(err)
	}
	encode = time.Since(t0)
	if err := le.e.Do(le.ctx, func() error { c.Release(); return nil }); err != nil {
		b.Fatal(err)
	}
	return pause, encode, len(w.Buf)
}

// latencies records the durations of sequential reads.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkReadLatency measures one sequential reader's latency (p50, p99,
// p99.9, max) for each read behind member.check, member.segments and status, on
// an engine of benchUsers users and 50 segments: idle (the baseline),
// while the writer applies batches of 10,000 events back to back, and
// while snapshots are captured and encoded back to back with the same
// ingest going on. p99-x and p999-x are the ratios to the idle figures of
// the same read in the same run. On a shared machine max is mostly the
// scheduler's. Run it with -benchtime 1x.
func BenchmarkReadLatency(b *testing.B) {
	le := loadEngine(b, benchUsers())
	defer le.stop()
	e := le.e
	one := []string{"c03"}
	reads := []struct {
		name string
		fn   func(user string)
	}{
		{"IsMember", func(u string) { _, _ = e.IsMember(u, "c03") }},
		{"MemberView1", func(u string) { _ = e.MemberView(u, one) }},
		{"MemberViewAll", func(u string) { _ = e.MemberView(u, nil) }},
		{"UserSegments", func(u string) { _ = e.UserSegments(u) }},
		{"Status", func(string) { _ = e.Status() }},
	}
	idle := map[string]latencies{}
	const perCondition = 2 * time.Second
	measure := func(fn func(string)) latencies {
		var out latencies
		rng := rand.New(rand.NewPCG(2, 2))
		for end := time.Now().Add(perCondition); time.Now().Before(end); {
			u := le.name(rng.IntN(le.users))
			t0 := time.Now()
			fn(u)
			out = append(out, time.Since(t0))
		}
		return out
	}
	var pauses, encodes []time.Duration
	for _, cond := range []string{"idle", "apply", "snapshot"} {
		for _, rd := range reads {
			b.Run(rd.name+"/"+cond, func(b *testing.B) {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				background := func(f func()) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
								f()
							}
						}
					}()
				}
				switch cond {
				case "apply":
					background(func() { le.applyLive(b) })
				case "snapshot":
					background(func() { le.applyLive(b) })
					background(func() {
						p, enc, _ := le.snapshot(b)
						pauses, encodes = append(pauses, p), append(encodes, enc)
					})
				}
				var l latencies
				for b.Loop() {
					l = measure(rd.fn)
				}
				close(stop)
				wg.Wait()
				us := func(d time.Duration) float64 { return d.Seconds() * 1e6 }
				b.ReportMetric(float64(len(l)), "reads")
				b.ReportMetric(us(l.quantile(0.5)), "p50-us")
				b.ReportMetric(us(l.quantile(0.99)), "p99-us")
				b.ReportMetric(us(l.quantile(0.999)), "p999-us")
				b.ReportMetric(us(l.quantile(1)), "max-us")
				if cond == "idle" {
					idle[rd.name] = l
					return
				}
				if base := idle[rd.name]; base != nil {
					b.ReportMetric(float64(l.quantile(0.99))/float64(max(1, base.quantile(0.99))), "p99-x")
					b.ReportMetric(float64(l.quantile(0.999))/float64(max(1, base.quantile(0.999))), "p999-x")
				}
			})
		}
	}
	if len(pauses) > 0 {
		b.Logf("%d users: %d snapshots, pause p50 %v max %v, encode p50 %v max %v (build %.1fs)", le.users, len(pauses),
			latencies(pauses).quantile(0.5), latencies(pauses).quantile(1), latencies(encodes).quantile(0.5), latencies(encodes).quantile(1), le.buildS)
	}
}
