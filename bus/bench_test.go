package bus

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/api"
)

// runClients sends b.N requests from `clients` goroutines, each on its own
// connection and one request at a time, and reports latency percentiles
// and throughput.
func runClients(b *testing.B, e *Embedded, clients int, subject string, body []byte, check func(*nats.Msg) error) {
	b.Helper()
	all, rate := measure(b, e, clients, b.N, subject, body, check)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(rate, "req/s")
}

var clientCounts = []int{1, 4, 16}

func memberCheckReply(msg *nats.Msg) error {
	if !bytes.HasPrefix(msg.Data, []byte(`{"member":true`)) {
		return fmt.Errorf("reply %s %v", msg.Data, msg.Header)
	}
	return nil
}

// BenchmarkMemberCheck measures member.check end to end (in-process
// connections), with the worker pool and answering inline on micro's
// goroutine, against a Membership that answers at once ("fast"), spends
// 50µs of CPU ("slow", a big lookup) or waits 100µs without CPU ("blocked",
// like a lookup waiting for the partition's read lock).
func BenchmarkMemberCheck(b *testing.B) {
	body := []byte(`{"user":"u1","segment":"vip"}`)
	for _, lookup := range []string{"fast", "slow", "blocked"} {
		for _, mode := range []string{"pool", "inline"} {
			for _, clients := range clientCounts {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", lookup, mode, clients), func(b *testing.B) {
					m := newMapMembership()
					switch lookup {
					case "slow":
						m.onCheck = func() error { spin(50 * time.Microsecond); return nil }
					case "blocked":
						m.onCheck = func() error { time.Sleep(100 * time.Microsecond); return nil }
					}
					opts := ServiceOptions{}
					if mode == "inline" {
						opts.Workers = -1
					}
					e, _, _ := serviceEnv(b, m, opts)
					runClients(b, e, clients, api.SubjectMemberCheck, body, memberCheckReply)
				})
			}
		}
	}
}

func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

// BenchmarkEchoBaseline is the floor: a bare core NATS request-reply echo
// on the same kind of server, with no micro, JSON or pool.
func BenchmarkEchoBaseline(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			e := startTestServer(b)
			nc, err := e.Connect()
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			reply := []byte(`{"member":true}`)
			sub, err := nc.QueueSubscribe("bench.echo", "q", func(m *nats.Msg) { _ = m.Respond(reply) })
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
			runClients(b, e, clients, "bench.echo", []byte(`{"user":"u1","segment":"vip"}`), memberCheckReply)
		})
	}
}

// measure sends n requests from `clients` goroutines, one at a time each,
// and returns the sorted latencies and the throughput.
func measure(tb testing.TB, e *Embedded, clients, n int, subject string, body []byte, check func(*nats.Msg) error) ([]time.Duration, float64) {
	tb.Helper()
	conns := make([]*nats.Conn, clients)
	for i := range conns {
		nc, err := e.Connect()
		if err != nil {
			tb.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	lat := make([][]time.Duration, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, nc := range conns {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				msg, err := nc.Request(subject, body, 5*time.Second)
				lat[i] = append(lat[i], time.Since(t0))
				if err == nil {
					err = check(msg)
				}
				if err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	return all, float64(len(all)) / elapsed.Seconds()
}

func pctl(all []time.Duration, p float64) float64 {
	if len(all) == 0 {
		return 0
	}
	return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1000
}

// BenchmarkMemberAPI measures member.check and member.segments with 1, 4
// and 16 clients against a bare NATS request-reply echo on the same server
// in the same run: p50-x and p99-x are latency ratios to the echo (lower is
// better, 1 is the floor), req/s-x the throughput ratio.
func BenchmarkMemberAPI(b *testing.B) {
	const echoN = 20000
	for _, ep := range []struct {
		name, subject string
		body          []byte
		check         func(*nats.Msg) error
	}{
		{"member.check", api.SubjectMemberCheck, []byte(`{"user":"u1","segment":"vip"}`), memberCheckReply},
		{"member.segments", api.SubjectMemberSegments, []byte(`{"user":"u1"}`), func(m *nats.Msg) error {
			if !bytes.HasPrefix(m.Data, []byte(`{"segments":["active","vip"]`)) {
				return fmt.Errorf("reply %s", m.Data)
			}
			return nil
		}},
	} {
		for _, clients := range clientCounts {
			b.Run(fmt.Sprintf("%s/clients=%d", ep.name, clients), func(b *testing.B) {
				e, nc, _ := serviceEnv(b, newMapMembership(), ServiceOptions{})
				reply := []byte(`{"member":true,"since":"2026-11-27T09:12:44Z"}`)
				sub, err := nc.QueueSubscribe("bench.echo", "q", func(m *nats.Msg) { _ = m.Respond(reply) })
				if err != nil {
					b.Fatal(err)
				}
				defer sub.Unsubscribe()
				if err := nc.Flush(); err != nil {
					b.Fatal(err)
				}
				// Warm both paths, then the echo baseline, then the endpoint.
				measure(b, e, clients, 2000, "bench.echo", ep.body, func(*nats.Msg) error { return nil })
				measure(b, e, clients, 2000, ep.subject, ep.body, ep.check)
				echo, echoRate := measure(b, e, clients, echoN, "bench.echo", ep.body, func(*nats.Msg) error { return nil })
				b.ResetTimer()
				all, rate := measure(b, e, clients, b.N, ep.subject, ep.body, ep.check)
				b.StopTimer()
				b.ReportMetric(pctl(all, 0.50), "p50-µs")
				b.ReportMetric(pctl(all, 0.99), "p99-µs")
				b.ReportMetric(rate, "req/s")
				b.ReportMetric(pctl(echo, 0.50), "echo-p50-µs")
				b.ReportMetric(echoRate, "echo-req/s")
				b.ReportMetric(pctl(all, 0.50)/pctl(echo, 0.50), "p50-x")
				b.ReportMetric(pctl(all, 0.99)/pctl(echo, 0.99), "p99-x")
				b.ReportMetric(rate/echoRate, "req/s-x")
			})
		}
	}
}
