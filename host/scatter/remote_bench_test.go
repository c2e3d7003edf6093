package scatter_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/remotepart/remotetest"
	"github.com/segd/segd/host/scatter"
)

// remoteBench is the benchmarks' data (40,000 users) as one engine, four
// partitions in this process, and the same four reached over NATS, with a
// bare request-reply echo on that server as the baseline of a round trip.
func remoteBench(b *testing.B) map[string]func(b *testing.B, do func(s *scatter.Scatter) error) {
	one, four, parts := scatter.BenchScatters(b)
	setup := remotetest.Start(b, parts, remotetest.Options{})
	remote, err := scatter.New(setup.Remote, scatter.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := setup.Owner.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := setup.Owner.Flush(); err != nil {
		b.Fatal(err)
	}
	run := func(s *scatter.Scatter) func(b *testing.B, do func(s *scatter.Scatter) error) {
		return func(b *testing.B, do func(s *scatter.Scatter) error) {
			for b.Loop() {
				if err := do(s); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return map[string]func(b *testing.B, do func(s *scatter.Scatter) error){
		"echo": func(b *testing.B, _ func(s *scatter.Scatter) error) {
			for b.Loop() {
				if _, err := setup.Caller.Request("bench.echo", []byte(`{"segment":"no_pay_3d"}`), time.Second); err != nil {
					b.Fatal(err)
				}
			}
		},
		"P=1": run(one), "P=4": run(four), "P=4/remote": run(remote),
	}
}

var remoteBenchOrder = []string{"echo", "P=1", "P=4", "P=4/remote"}

// BenchmarkRemoteSegmentCount: segment.count over one engine, four local
// partitions and four partitions over NATS (four requests at once), with
// a bare NATS request-reply ("echo") as the baseline.
func BenchmarkRemoteSegmentCount(b *testing.B) {
	runs := remoteBench(b)
	for _, name := range remoteBenchOrder {
		b.Run(name, func(b *testing.B) {
			runs[name](b, func(s *scatter.Scatter) error { _, err := s.SegmentCount("no_pay_3d"); return err })
		})
	}
}

// BenchmarkRemoteFunnel: BenchmarkFunnel's funnel (three steps over two
// weeks with a segment) the same four ways.
func BenchmarkRemoteFunnel(b *testing.B) {
	runs := remoteBench(b)
	r := &api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "page_view"}, {Event: "checkout"}, {Event: "pay"}},
		Window: "3d", From: "2026-11-07", To: "2026-11-20", Segments: []string{"no_pay_3d"}}
	for _, name := range remoteBenchOrder {
		b.Run(name, func(b *testing.B) {
			runs[name](b, func(s *scatter.Scatter) error { _, err := s.AnalyzeFunnel(context.Background(), r); return err })
		})
	}
}
