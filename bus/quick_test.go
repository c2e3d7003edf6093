package bus

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// stuckMembership is a mapMembership whose lookups of the user "stuck"
// wait until release is closed, like a read behind a lock the writer
// holds: TryMemberView gives up on them, MemberView waits.
type stuckMembership struct {
	*mapMembership
	entered chan struct{} // closed when a MemberView of "stuck" waits
	release chan struct{}
	tries   atomic.Int64 // TryMemberView calls that answered
	once    atomic.Bool
}

func (m *stuckMembership) MemberView(user string, segments []string) MemberView {
	if user == "stuck" {
		if m.once.CompareAndSwap(false, true) {
			close(m.entered)
		}
		<-m.release
	}
	return m.mapMembership.MemberView(user, segments)
}

func (m *stuckMembership) TryMemberView(user string, segments []string) (MemberView, bool) {
	if user == "stuck" {
		return MemberView{}, false
	}
	m.tries.Add(1)
	return m.mapMembership.MemberView(user, segments), true
}

// TestQuickLookupNeverHoldsOthers: member requests whose lookup would
// wait go to the worker pool (here one worker, which the first then
// holds); the requests behind them are answered on micro's goroutine at
// once. Without the fast path they waited behind the stuck one for the
// only worker; a fast path without the fallback (waiting on micro's
// goroutine) would hold them too.
func TestQuickLookupNeverHoldsOthers(t *testing.T) {
	t.Parallel()
	m := &stuckMembership{mapMembership: newMapMembership(), entered: make(chan struct{}), release: make(chan struct{})}
	_, nc, _ := serviceEnv(t, m, ServiceOptions{Workers: 1})
	// Cleanups run last first: a failure lets the held worker go before
	// the service stops (it would wait for it for ever).
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(m.release) }) }
	t.Cleanup(release)
	type reply struct {
		msg *nats.Msg
		err error
	}
	send := func(subject, body string) chan reply {
		c := make(chan reply, 1)
		go func() {
			msg, err := nc.Request(subject, []byte(body), 30*time.Second)
			c <- reply{msg, err}
		}()
		return c
	}
	quick := func(subject, body, want string) {
		t.Helper()
		before := m.tries.Load()
		msg, err := nc.Request(subject, []byte(body), 3*time.Second)
		if err != nil {
			t.Fatalf("%s %s behind a stuck lookup: %v", subject, body, err)
		}
		if string(msg.Data) != want {
			t.Fatalf("%s %s: %s, want %s", subject, body, msg.Data, want)
		}
		if m.tries.Load() != before+1 {
			t.Fatalf("%s %s was not answered by TryMemberView", subject, body)
		}
	}
	stuck1 := send(api.SubjectMemberCheck, `{"user":"stuck","segment":"vip"}`)
	select {
	case <-m.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck lookup never reached MemberView")
	}
	quick(api.SubjectMemberCheck, `{"user":"u1","segment":"vip"}`, `{"member":true,"since":"2026-11-27T09:12:44Z",`+exactAsOf+`}`)
	quick(api.SubjectMemberSegments, `{"user":"u1","segments":["vip"]}`,
		`{"segments":["vip"],"memberships":[{"segment":"vip","since":"2026-11-27T09:12:44Z"}],"states":[{"segment":"vip","state":"exact"}],"as_of":{"seq":7,"time":"2026-11-28T10:15:00Z"}}`)
	stuck2 := send(api.SubjectMemberSegments, `{"user":"stuck","segments":["vip"]}`) // queued behind stuck1
	quick(api.SubjectMemberCheck, `{"user":"u2","segment":"vip"}`, `{"member":false,`+exactAsOf+`}`)
	// Every segment, or more than maxQuickSegments: a worker's job (the
	// one worker is held, so it waits), never micro's goroutine.
	before := m.tries.Load()
	all := send(api.SubjectMemberSegments, `{"user":"u1"}`)
	// Distinct names: repeats are asked once, and 16 repeats of one name
	// are a quick query of 2 segments.
	var manyNames strings.Builder
	for i := range maxQuickSegments {
		fmt.Fprintf(&manyNames, `"x%d",`, i)
	}
	many := send(api.SubjectMemberSegments, `{"user":"u1","segments":[`+manyNames.String()+`"vip"]}`)
	quick(api.SubjectMemberCheck, `{"user":"u1","segment":"active"}`, `{"member":true,"since":"2026-11-27T09:12:44Z",`+exactAsOf+`}`)
	if m.tries.Load() != before+1 {
		t.Fatalf("member.segments of every segment or of %d segments was answered on micro's goroutine", maxQuickSegments+1)
	}
	release()
	for i, c := range []chan reply{stuck1, stuck2, all, many} {
		r := <-c
		if r.err != nil {
			t.Fatalf("stuck request %d, released: %v", i+1, r.err)
		}
		if want := []string{`{"member":false,`, `{"segments":[],`, `{"segments":["active","vip"],`, `{"segments":["vip"],`}[i]; !strings.HasPrefix(string(r.msg.Data), want) {
			t.Fatalf("stuck request %d, released: %s %v; want %s...", i+1, r.msg.Data, r.msg.Header, want)
		}
	}
}

// quickMap is a mapMembership that is a QuickMembership.
type quickMap struct{ *mapMembership }

func (m quickMap) TryMemberView(user string, segments []string) (MemberView, bool) {
	return m.MemberView(user, segments), true
}

// handlerRequest is a micro.Request handed straight to a handler: the
// service answers on its connection (respond), not through it.
type handlerRequest struct {
	micro.Request
	data  []byte
	reply string
}

func (r *handlerRequest) Data() []byte  { return r.data }
func (r *handlerRequest) Reply() string { return r.reply }

// BenchmarkMemberHandler measures the service's own work per member
// request, with no network round trip: micro's handler called directly,
// over a map membership (fast path) or a membership without
// TryMemberView (handed to the pool), answering on a real connection, with
// an OnRequest like the host's metrics. ns/op and allocs/op are the
// per-request cost the service adds to a lookup.
func BenchmarkMemberHandler(b *testing.B) {
	for _, path := range []string{"quick", "pool"} {
		for _, ep := range []string{"member_check", "member_segments"} {
			b.Run(path+"/"+ep, func(b *testing.B) {
				var m Membership = quickMap{newMapMembership()}
				if path == "pool" {
					m = newMapMembership()
				}
				var observed atomic.Int64
				_, nc, svc := serviceEnv(b, m, ServiceOptions{OnRequest: func(string, string, time.Duration) { observed.Add(1) }})
				inbox := nats.NewInbox()
				sub, err := nc.SubscribeSync(inbox)
				if err != nil {
					b.Fatal(err)
				}
				var d endpointDef
				for _, def := range endpointDefs {
					if def.name == ep {
						d = def
					}
				}
				body := `{"user":"u1","segment":"vip"}`
				if ep == "member_segments" {
					body = `{"user":"u1","segments":["active","empty","vip"]}`
				}
				h := svc.handler(d)
				req := &handlerRequest{data: []byte(body), reply: inbox}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					h(req)
					if i%512 == 511 || i == b.N-1 {
						// Keep the replies from piling up past the
						// subscription's limits.
						for observed.Load() < int64(i+1) {
							runtime.Gosched()
						}
						if err := nc.Flush(); err != nil {
							b.Fatal(err)
						}
						for {
							if _, err := sub.NextMsg(0); err != nil {
								break
							}
						}
					}
				}
			})
		}
	}
}
