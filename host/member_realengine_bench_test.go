package host_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/segd/segd/internal/ingestbench"
)

// BenchmarkMemberRealEngine measures member.check and member.segments
// against a real segd (host.Start, in this process, on an embedded NATS
// server over TCP) with 200k users and 100 segments loaded from a generated
// stream, with 1 and 16 clients (one request at a time each), idle, while a
// producer publishes 20k events/s, and while snapshots are written back to
// back. Each sub-benchmark first measures a bare micro echo service on the
// same server with the same clients and the same background, b.N requests,
// then the segd request: p50-x and p99-x are latency over the echo's (lower
// is better), rps-x throughput over the echo's (higher is better). With
// -short, 20k users are loaded instead.
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
					row, err := m.MeasureBeside(r, mode, clients, b.N)
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
