package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/api"
)

// beforeContract is member.check as it was before the membership
// contract (only "member" and "since", from MemberSince) on another
// subject; its Parse is set per run.
var beforeContract = Endpoint{Name: "member_check_before", Subject: "bench.member_check_before"}

const beforeSubject = api.Group + ".bench.member_check_before"

// BenchmarkMemberCheckContract measures member.check with the state and
// as_of fields ("after") against the same request answered as before the
// contract ("before": member and since from MemberSince), and a bare echo,
// on one service in the same run: after-x is the p50 latency ratio of
// after to before, req/s-x the throughput ratio.
func BenchmarkMemberCheckContract(b *testing.B) {
	body := []byte(`{"user":"u1","segment":"vip"}`)
	for _, clients := range clientCounts {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			m := newMapMembership()
			before := beforeContract
			before.Parse = func(data []byte) (func() (any, error), *api.ErrorDetail) {
				var r struct {
					User    json.RawMessage `json:"user"`
					Segment string          `json:"segment"`
				}
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				user, bad := requestUser(r.User)
				if bad != nil {
					return nil, bad
				}
				return func() (any, error) {
					ok, since, err := m.MemberSince(user, r.Segment)
					rep := struct {
						Member bool   `json:"member"`
						Since  string `json:"since,omitempty"`
					}{Member: ok}
					if ok && !since.IsZero() {
						rep.Since = since.Format(time.RFC3339)
					}
					return rep, err
				}, nil
			}
			e, nc, _ := serviceEnv(b, m, ServiceOptions{Endpoints: []Endpoint{before}})
			sub, err := nc.QueueSubscribe("bench.echo", "q", func(msg *nats.Msg) { _ = msg.Respond([]byte(`{"member":true}`)) })
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
			ok := func(msg *nats.Msg) error {
				if !bytes.HasPrefix(msg.Data, []byte(`{"member":true`)) {
					return fmt.Errorf("reply %s %v", msg.Data, msg.Header)
				}
				return nil
			}
			for _, s := range []string{"bench.echo", beforeSubject, api.SubjectMemberCheck} { // warm every path
				measure(b, e, clients, 2000, s, body, ok)
			}
			// The three alternate in rounds, so that a shift in the
			// machine's load weighs on each alike.
			var echo, old, all []time.Duration
			var echoT, oldT, allT time.Duration
			round := func(subject string, lat *[]time.Duration, took *time.Duration, n int) {
				start := time.Now()
				l, _ := measure(b, e, clients, n, subject, body, ok)
				*took += time.Since(start)
				*lat = append(*lat, l...)
			}
			b.ResetTimer()
			for done := 0; done < b.N; done += 2000 {
				n := min(2000, b.N-done)
				round(api.SubjectMemberCheck, &all, &allT, n)
				b.StopTimer()
				round(beforeSubject, &old, &oldT, n)
				round("bench.echo", &echo, &echoT, n)
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(all)
			slices.Sort(old)
			slices.Sort(echo)
			rate, oldRate, echoRate := float64(len(all))/allT.Seconds(), float64(len(old))/oldT.Seconds(), float64(len(echo))/echoT.Seconds()
			b.ReportMetric(pctl(all, 0.50), "p50-µs")
			b.ReportMetric(pctl(old, 0.50), "before-p50-µs")
			b.ReportMetric(pctl(echo, 0.50), "echo-p50-µs")
			b.ReportMetric(rate, "req/s")
			b.ReportMetric(oldRate, "before-req/s")
			b.ReportMetric(echoRate, "echo-req/s")
			b.ReportMetric(pctl(all, 0.50)/pctl(old, 0.50), "after-x")
			b.ReportMetric(rate/oldRate, "req/s-x")
		})
	}
}
