package host_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/segd/segd/internal/ingestbench"
)

// BenchmarkMemberRealEngine measures member.check and member.segments
// against a real segd (host.Start, in this process, on an embedded NATS
// server over TCP) with 200k users and 100 segments loaded from a generated
// stream, with 1 and 16 clients (one request at a time each), idle, while a
// producer publishes 20k events/s, and while snapshots are written back to
// back. Each sub-benchmark first measures a bare micro echo service on the
// same server with the same clients and the same background, then the segd
// request, in alternating rounds (on a shared machine the load changes
// within seconds; a round pairs what ran side by side): p50-x and p99-x are
// the median over rounds of latency over the echo's (lower is better),
// rps-x of throughput over the echo's (higher is better); the absolute
// figures are medians over rounds too. With -short, 20k users are loaded
// instead.
//
// bus BenchmarkMemberCheck and BenchmarkMemberAPI measure the service
// layer over a map instead of the engine.
func BenchmarkMemberRealEngine(b *testing.B) {
	users := 200000
	if testing.Short() {
		users = 20000
	}
	ctx := context.Background()
	m, err := ingestbench.NewMemberBench(ctx, ingestbench.MemberConfig{Stream: ingestbench.StreamConfig{Users: users},
		Rules: 100, Segd: ingestbench.InProcess{Snapshots: true}, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.Logf("%d users, %d segments loaded in %s", m.Users(), len(m.Segments()), m.Loaded)
	for _, r := range []ingestbench.Request{ingestbench.MemberCheck, ingestbench.MemberSegments} {
		for _, mode := range m.Modes() {
			for _, clients := range []int{1, 16} {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", r, mode, clients), func(b *testing.B) {
					stop := m.Background(ctx, mode)
					row, err := measureInterleaved(m, r, clients, b.N)
					what, berr := stop()
					if err != nil {
						b.Fatal(err)
					}
					if berr != nil {
						b.Fatal(berr)
					}
					if what != "" {
						b.Logf("meanwhile: %s", what)
					}
					b.ReportMetric(row.Stats.P50, "p50-µs")
					b.ReportMetric(row.Stats.P99, "p99-µs")
					b.ReportMetric(row.Stats.Rate, "req/s")
					b.ReportMetric(row.Echo.P50, "echo-p50-µs")
					b.ReportMetric(row.Echo.Rate, "echo-req/s")
					b.ReportMetric(row.P50X, "p50-x")
					b.ReportMetric(row.P99X, "p99-x")
					b.ReportMetric(row.RateX, "rps-x")
				})
			}
		}
	}
}

// memberRounds is how many alternating rounds of echo and request a
// measurement takes.
const memberRounds = 7

// measureInterleaved measures the echo and r in memberRounds alternating
// rounds of n/memberRounds requests (at least 200) and returns the medians
// over rounds, of the ratios and of the absolute figures.
func measureInterleaved(m *ingestbench.MemberBench, r ingestbench.Request, clients, n int) (ingestbench.MemberRow, error) {
	per := max(n/memberRounds, 200)
	var echo, got []ingestbench.Stats
	var p50x, p99x, ratex []float64
	for range memberRounds {
		e, err := m.Measure(ingestbench.Echo, clients, per)
		if err != nil {
			return ingestbench.MemberRow{}, err
		}
		g, err := m.Measure(r, clients, per)
		if err != nil {
			return ingestbench.MemberRow{}, err
		}
		echo, got = append(echo, e), append(got, g)
		p50x, p99x, ratex = append(p50x, g.P50/e.P50), append(p99x, g.P99/e.P99), append(ratex, g.Rate/e.Rate)
	}
	med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
	stat := func(ss []ingestbench.Stats) ingestbench.Stats {
		var p50, p99, rate []float64
		for _, s := range ss {
			p50, p99, rate = append(p50, s.P50), append(p99, s.P99), append(rate, s.Rate)
		}
		return ingestbench.Stats{Requests: per * len(ss), P50: med(p50), P99: med(p99), Rate: med(rate)}
	}
	return ingestbench.MemberRow{Request: r.String(), Clients: clients, Stats: stat(got), Echo: stat(echo),
		P50X: med(p50x), P99X: med(p99x), RateX: med(ratex)}, nil
}
