package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/clustertest"
)

// The two ownership mechanisms issue 14 asked to compare, measured the
// same way on a 3-node cluster with R3 storage: the owner of one
// partition dies (its connection closes without a word, as NATS sees a
// SIGKILLed host) and the clock runs until the other host owns it.
// Run with: go test -run '^$' -bench Takeover -benchtime 3x ./bus/cluster/

// BenchmarkTakeoverKVLease measures the KV lease: kill → the survivor's
// OnGain. Expected: between Lease-Lease/3 and Lease after the last renewal,
// plus up to 1s of the server's TTL tick.
func BenchmarkTakeoverKVLease(b *testing.B) {
	for _, lease := range []time.Duration{2 * time.Second, 10 * time.Second} {
		b.Run(fmt.Sprintf("lease=%s", lease), func(b *testing.B) { benchTakeoverKV(b, lease) })
	}
}

func benchTakeoverKV(b *testing.B, lease time.Duration) {
	c := clustertest.Start(b, clustertest.Options{})
	gained := make(chan string, 16)
	join := func(id string) (*Owner, *nats.Conn) {
		nc := c.Connect(b)
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o, err := Join(ctx, js, Options{
			HostID: id, Partitions: 2, Lease: lease, Replicas: 3,
			OnGain: func(*Lease) { gained <- id },
		})
		if err != nil {
			b.Fatal(err)
		}
		return o, nc
	}
	// P = 2 on hosts a and b: one partition each. Each round kills a and
	// times b's gain of a's partition, then brings a back.
	ob, _ := join("b")
	defer ob.Close(context.Background())
	stable := func(o *Owner) {
		deadline := time.Now().Add(60 * time.Second)
		for len(o.Owned()) != 1 || len(ob.Owned()) != 1 {
			if time.Now().After(deadline) {
				b.Fatalf("shares %v %v", o.Owned(), ob.Owned())
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
		for len(gained) > 0 {
			<-gained
		}
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		oa, nca := join("a")
		stable(oa)
		b.StartTimer()
		start := time.Now()
		nca.Close()
		for id := <-gained; id != "b"; id = <-gained {
		}
		total += time.Since(start)
		b.StopTimer()
		oa.Close(context.Background())
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/takeover")
	b.ReportMetric(lease.Seconds(), "lease-s")
}

// BenchmarkTakeoverPinned measures a pull consumer with the pinned-client
// priority policy: two clients pull in the group, messages flow every
// 10ms; kill → the first message delivered to the other client.
func BenchmarkTakeoverPinned(b *testing.B) {
	for _, ttl := range []time.Duration{2 * time.Second, 10 * time.Second} {
		b.Run(fmt.Sprintf("ttl=%s", ttl), func(b *testing.B) { benchTakeoverPinned(b, ttl) })
	}
}

func benchTakeoverPinned(b *testing.B, pinnedTTL time.Duration) {
	c := clustertest.Start(b, clustertest.Options{})
	nc := c.Connect(b)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PIN", Subjects: []string{"pin.>"}, Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "PIN", jetstream.ConsumerConfig{
		Durable: "p0", AckPolicy: jetstream.AckExplicitPolicy, Replicas: 3,
		PriorityPolicy: jetstream.PriorityPolicyPinned, PinnedTTL: pinnedTTL,
		PriorityGroups: []string{"owner"},
	}); err != nil {
		b.Fatal(err)
	}
	// A steady trickle of messages: a pin is only given with a delivery.
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			js.Publish(ctx, "pin.x", []byte(fmt.Sprint(i)))
			time.Sleep(10 * time.Millisecond) // publishing rate, not a synchronization
		}
	}()
	var current atomic.Value // id of the client that last received
	got := make(chan string, 1024)
	consume := func(id string) (*nats.Conn, jetstream.ConsumeContext) {
		cnc := c.Connect(b)
		cjs, _ := jetstream.New(cnc)
		cons, err := cjs.Consumer(ctx, "PIN", "p0")
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			m.Ack()
			if current.Load() != id {
				current.Store(id)
				got <- id
			}
		}, jetstream.PullPriorityGroup("owner"), jetstream.PullExpiry(time.Second), jetstream.PullHeartbeat(500*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		return cnc, cc
	}
	conns := map[string]*nats.Conn{}
	ccs := map[string]jetstream.ConsumeContext{}
	for _, id := range []string{"a", "b"} {
		conns[id], ccs[id] = consume(id)
	}
	holder := <-got
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		conns[holder].Close()
		var next string
		for next = <-got; next == holder; next = <-got {
		}
		total += time.Since(start)
		b.StopTimer()
		ccs[holder].Stop()
		conns[holder], ccs[holder] = consume(holder)
		holder = next
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/takeover")
	b.ReportMetric(pinnedTTL.Seconds(), "pinned_ttl-s")
	for _, cc := range ccs {
		cc.Stop()
	}
}
