package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/clustertest"
)

// routedHost is a host with an Owner whose leases drive a Router.
type routedHost struct {
	id string
	nc *nats.Conn
	o  *Owner
	r  *Router

	mu      sync.Mutex
	invalid []int // partitions answered without a valid lease (must stay empty)
}

func joinRouted(t *testing.T, c *clustertest.Cluster, id string, parts int, lease time.Duration) *routedHost {
	t.Helper()
	h := &routedHost{id: id, nc: c.Connect(t)}
	h.r = NewRouter(h.nc)
	h.r.Handle("who", func(ctx context.Context, n int, req []byte) ([]byte, error) {
		if l, ok := h.o.Lease(n); !ok || !l.Valid() {
			h.mu.Lock()
			h.invalid = append(h.invalid, n)
			h.mu.Unlock()
		}
		return fmt.Appendf(nil, "%s p%d %s", id, n, req), nil
	})
	h.r.Handle("fail", func(ctx context.Context, n int, req []byte) ([]byte, error) {
		if string(req) == "bad" {
			return nil, &StatusError{Code: 400, Reason: "bad\r\nrequest"}
		}
		return nil, errors.New("a bug")
	})
	js, _ := jetstream.New(h.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	h.o, err = Join(ctx, js, Options{
		HostID: id, Partitions: parts, Lease: lease, Replicas: 3,
		OnGain: func(l *Lease) {
			if err := h.r.Serve(l); err != nil {
				t.Errorf("serve: %v", err)
			}
		},
		OnLose: func(l *Lease, _ error) { h.r.Stop(l.Partition) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.o.Close(ctx)
		h.r.Close()
	})
	return h
}

// TestForwardFollowsOwnership sends internal requests for every partition
// from a third connection: the owner answers; statuses pass through; after
// the owner of some partitions dies a request waits for the new owner, or
// answers 503 with a reason when it may not wait that long.
func TestForwardFollowsOwnership(t *testing.T) {
	t.Parallel()
	const parts, lease = 4, 2 * time.Second
	c := clustertest.Start(t, clustertest.Options{})
	a := joinRouted(t, c, "a", parts, lease)
	b := joinRouted(t, c, "b", parts, lease)
	client := c.Connect(t)
	ctx := context.Background()

	waitShares(t, []*testHost{{o: a.o}, {o: b.o}}, []int{2, 2}, parts, 30*time.Second)
	for n := 0; n < parts; n++ {
		got, err := Forward(ctx, client, n, "who", []byte("hi"), ForwardOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := "a"
		if _, ok := b.o.Lease(n); ok {
			want = "b"
		}
		if string(got) != fmt.Sprintf("%s p%d hi", want, n) {
			t.Fatalf("partition %d answered %q, want it from %s", n, got, want)
		}
	}

	for _, tc := range []struct {
		op, req string
		code    int
		reason  string
	}{
		{"fail", "bad", 400, "bad  request"},
		{"fail", "", 500, "a bug"},
		{"nope", "", 404, `internal op "nope": no such op`},
		{"Bad.Op", "", 400, "want 1-32"},
	} {
		_, err := Forward(ctx, client, 0, tc.op, []byte(tc.req), ForwardOptions{})
		var se *StatusError
		if !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("%s(%q): %v, want %d %q", tc.op, tc.req, err, tc.code, tc.reason)
		}
	}

	// a dies. Right after, its partitions have no owner: a short wait
	// gives 503; a long one gets b's answer.
	aParts := a.o.Owned()
	a.nc.Close()
	n := aParts[0]
	_, err := Forward(ctx, client, n, "who", nil, ForwardOptions{MaxWait: 200 * time.Millisecond})
	if _, bOwns := b.o.Lease(n); !bOwns {
		// No owner, or (if the dead owner's interest has not left the
		// cluster yet) an owner that does not answer: 503 either way.
		if !Unavailable(err) || !strings.Contains(err.Error(), fmt.Sprintf("partition %d", n)) {
			t.Fatalf("right after the owner died: %v, want 503 naming partition %d", err, n)
		}
	}
	for _, n := range aParts {
		got, err := Forward(ctx, client, n, "who", nil, ForwardOptions{MaxWait: 4*lease + 5*time.Second})
		if err != nil || !strings.HasPrefix(string(got), "b ") {
			t.Fatalf("partition %d after the takeover: %q %v, want b's answer", n, got, err)
		}
	}
	for _, h := range []*routedHost{a, b} {
		h.mu.Lock()
		if len(h.invalid) > 0 {
			t.Errorf("%s answered for partitions %v without a valid lease", h.id, h.invalid)
		}
		h.mu.Unlock()
	}
}
