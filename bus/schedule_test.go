package bus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// blockingEndpoints returns a slow endpoint whose requests block until
// release is closed (signalling started when they begin), and a slow
// endpoint that answers at once.
func blockingEndpoints(started chan<- struct{}, release <-chan struct{}) []Endpoint {
	return []Endpoint{
		{Name: "block", Subject: "test.block", Slow: true, Parse: func([]byte) (func() (any, error), *api.ErrorDetail) {
			return func() (any, error) {
				started <- struct{}{}
				<-release
				return "released", nil
			}, nil
		}},
		{Name: "cheap", Subject: "test.cheap", Slow: true, Parse: func([]byte) (func() (any, error), *api.ErrorDetail) {
			return func() (any, error) { return "cheap", nil }, nil
		}},
	}
}

// replyOK fails unless msg is a success reply.
func replyOK(t *testing.T, what string, msg *nats.Msg, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if d := msg.Header.Get(micro.ErrorHeader); d != "" {
		t.Fatalf("%s: %s %s", what, msg.Header.Get(micro.ErrorCodeHeader), d)
	}
}

// TestSlowEndpointCannotStarveOthers: while one slow endpoint's requests
// take every slow slot they may, membership requests and another slow
// endpoint are still answered.
func TestSlowEndpointCannotStarveOthers(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}, 16), make(chan struct{})
	defer close(release)
	const slots = 3
	_, nc, _ := serviceEnv(t, newMapMembership(), ServiceOptions{SlowWorkers: slots, Endpoints: blockingEndpoints(started, release)})
	for range slots {
		if err := nc.PublishRequest(api.Group+".test.block", nats.NewInbox(), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the blocking requests hold what they can.
	<-started
	msg, err := nc.Request(api.SubjectMemberCheck, []byte(`{"user":"u1","segment":"vip"}`), 5*time.Second)
	replyOK(t, "member.check beside blocked slow work", msg, err)
	msg, err = nc.Request(api.Group+".test.cheap", nil, 5*time.Second)
	if errors.Is(err, nats.ErrTimeout) {
		t.Fatal("another slow endpoint was starved by the blocked one")
	}
	replyOK(t, "test.cheap beside blocked slow work", msg, err)
}

// TestRequestDeadline: a cheap request of an endpoint is answered while
// an expensive one of the same endpoint runs; requests that never finish,
// running or waiting for a slot, end at their deadline with a 503 that
// says so: nothing waits for ever.
func TestRequestDeadline(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 16)
	ep := Endpoint{Name: "stuck", Subject: "test.stuck", Slow: true, Timeout: time.Second,
		ParseContext: func(data []byte) (Work, *api.ErrorDetail) {
			if string(data) == "cheap" {
				return func(context.Context) (any, error) { return "cheap", nil }, nil
			}
			return func(ctx context.Context) (any, error) {
				started <- struct{}{}
				<-ctx.Done() // work that honours its deadline and nothing else
				return nil, ctx.Err()
			}, nil
		}}
	const slots = 4 // the endpoint may hold 3
	_, nc, _ := serviceEnv(t, newMapMembership(), ServiceOptions{SlowWorkers: slots, Endpoints: []Endpoint{ep}})
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	stuck := func() {
		if err := nc.PublishRequest(api.Group+".test.stuck", inbox, nil); err != nil {
			t.Fatal(err)
		}
	}
	stuck()
	<-started
	msg, err := nc.Request(api.Group+".test.stuck", []byte("cheap"), 5*time.Second)
	replyOK(t, "a cheap request beside an expensive one of its endpoint", msg, err)
	if n, _, _ := sub.Pending(); n != 0 {
		t.Fatal("the expensive request ended before the cheap one was answered; the test proves nothing")
	}
	for range slots - 1 { // two more run, one waits for a slot
		stuck()
	}
	for range slots {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("a stuck request got no answer: %v", err)
		}
		if code, d := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader); code != api.CodeUnavailable || !strings.Contains(d, "deadline") {
			t.Errorf("stuck request: %s %q, want 503 naming the deadline", code, d)
		}
	}
}

// TestHandlerNeverWaits: with the pool's queue full, a request is
// answered 503 at once instead of holding micro's goroutine.
func TestHandlerNeverWaits(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	m := newMapMembership()
	var once sync.Once
	entered := make(chan struct{})
	m.onCheck = func() error {
		once.Do(func() { close(entered) })
		<-release
		return nil
	}
	_, nc, _ := serviceEnv(t, m, ServiceOptions{Workers: 1, MaxQueued: 1})
	inbox := nats.NewInbox()
	for range 2 { // one runs, one waits in the queue
		if err := nc.PublishRequest(api.SubjectMemberCheck, inbox, []byte(`{"user":"u1","segment":"vip"}`)); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	// The queue may not hold the second request yet: retry until a 503.
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := nc.Request(api.SubjectMemberCheck, []byte(`{"user":"u1","segment":"vip"}`), 5*time.Second)
		if err != nil {
			t.Fatalf("a request beside a full queue: %v", err)
		}
		if msg.Header.Get(micro.ErrorCodeHeader) == api.CodeUnavailable && strings.Contains(msg.Header.Get(micro.ErrorHeader), "busy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 503 with a full queue: %s %q", msg.Header.Get(micro.ErrorCodeHeader), msg.Data)
		}
	}
}

// TestSlowWaitingIsBounded: an endpoint's requests waiting for slow work
// are bounded (each holds its decoded body); past the bound a request is
// answered 503 at once, and other endpoints are still served.
func TestSlowWaitingIsBounded(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}, 1024), make(chan struct{})
	defer close(release)
	const slots = 2 // the endpoint may run 1 and have 16 waiting
	_, nc, _ := serviceEnv(t, newMapMembership(), ServiceOptions{SlowWorkers: slots, Endpoints: blockingEndpoints(started, release)})
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	const sent = 1 + slowWaitingPerSlot*slots + 5
	for range sent {
		if err := nc.PublishRequest(api.Group+".test.block", inbox, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range sent - 1 - slowWaitingPerSlot*slots {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no 503 past the bound: %v", err)
		}
		if code, d := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader); code != api.CodeUnavailable || !strings.Contains(d, "busy") {
			t.Errorf("past the bound: %s %q, want 503 busy", code, d)
		}
	}
	msg, err := nc.Request(api.Group+".test.cheap", nil, 5*time.Second)
	replyOK(t, "another slow endpoint beside a full one", msg, err)
}
