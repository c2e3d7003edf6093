// Package remotetest serves partitions over a real embedded NATS server
// for tests: one owner host serves the Parts it is given (remotepart.Serve
// behind a cluster.Router, with leases from cluster.Join), and a caller
// connection reaches them as remotepart.New Parts.
package remotetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/remotepart"
	"github.com/segd/segd/host/scatter"
)

// Options configures Start.
type Options struct {
	// MaxPayload of the server (default 1 MiB).
	MaxPayload int32
	// Remote configures the caller's Parts (Location defaults to the
	// first local Part's).
	Remote remotepart.Options
	// Unowned are partitions the owner does not serve: their remote
	// Parts have no owner.
	Unowned []int
	// Lease is the owner's lease (default 10s).
	Lease time.Duration
}

// Setup is a server, an owner host serving local Parts, and a caller's
// remote Parts of them.
type Setup struct {
	Server *bus.Embedded
	// Owner and Caller are the two hosts' connections.
	Owner, Caller *nats.Conn
	Router        *cluster.Router
	// Remote[n] is partition n as the caller reaches it.
	Remote []scatter.Part
}

// Start serves local (local[n] is partition n of len(local)) from an owner
// host and returns the caller's remote Parts once every owned partition
// answers.
func Start(t testing.TB, local []scatter.Part, opts Options) *Setup {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), NoListen: true, MaxPayload: opts.MaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	conn := func() *nats.Conn {
		nc, err := e.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	s := &Setup{Server: e, Owner: conn(), Caller: conn()}
	s.Router = cluster.NewRouter(s.Owner)
	t.Cleanup(s.Router.Close)

	skip := map[int]bool{}
	for _, n := range opts.Unowned {
		skip[n] = true
	}
	var mu sync.Mutex
	serving := map[int]bool{}
	if err := remotepart.Serve(s.Router, func(n int) (scatter.Part, bool) {
		mu.Lock()
		defer mu.Unlock()
		if !serving[n] || n >= len(local) {
			return nil, false
		}
		return local[n], true
	}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(s.Owner)
	if err != nil {
		t.Fatal(err)
	}
	// The owner holds every partition but those left unowned; a second
	// Owner (on its own connection) holds those, never serving them.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if opts.Lease == 0 {
		opts.Lease = 10 * time.Second
	}
	owner, err := cluster.Join(ctx, js, cluster.Options{HostID: "owner", Partitions: len(local), Lease: opts.Lease,
		OnGain: func(l *cluster.Lease) {
			if skip[l.Partition] {
				return
			}
			mu.Lock()
			serving[l.Partition] = true
			mu.Unlock()
			if err := s.Router.Serve(l); err != nil {
				t.Errorf("serve partition %d: %v", l.Partition, err)
			}
		},
		OnLose: func(l *cluster.Lease, _ error) {
			mu.Lock()
			serving[l.Partition] = false
			mu.Unlock()
			s.Router.Stop(l.Partition)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		owner.Close(ctx)
	})
	deadline := time.Now().Add(30 * time.Second)
	for len(owner.Owned()) < len(local) {
		if time.Now().After(deadline) {
			t.Fatalf("the owner holds partitions %v of %d after 30s", owner.Owned(), len(local))
		}
		time.Sleep(10 * time.Millisecond)
	}
	ro := opts.Remote
	if ro.Location == nil {
		ro.Location = local[0].Location()
	}
	if ro.Clock == nil {
		ro.Clock = local[0].Now
	}
	if ro.Segments == nil {
		// The rules are the same in every partition: the first's ids.
		ro.Segments = func() []string {
			var ids []string
			for _, info := range local[0].Segments() {
				ids = append(ids, info.ID)
			}
			return ids
		}
	}
	for n := range local {
		s.Remote = append(s.Remote, remotepart.New(s.Caller, n, len(local), ro))
	}
	return s
}
