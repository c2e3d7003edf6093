package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { Main(m) }

// TestClusterSurvivesKillAndRestart starts 3 nodes, writes to an R3 KV
// bucket, SIGKILLs the bucket's stream leader, checks that the survivors
// elect another and keep the data, then restarts the node and checks that
// it catches up.
func TestClusterSurvivesKillAndRestart(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{})
	if got := len(c.URLs()); got != 3 {
		t.Fatalf("URLs: %d, want 3", got)
	}
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if c.MetaLeader(0) < 0 {
		t.Fatal("no meta leader after WaitReady")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "T", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(ctx, js, "KV_T")
	if leader < 0 {
		t.Fatal("KV_T has no leader")
	}
	c.Kill(leader)

	// The survivors elect a leader and accept writes again. Each attempt
	// has its own deadline: a write to a stream without a leader is
	// dropped, not refused, and would wait out the whole ctx.
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kv.Put(actx, "k", []byte("after"))
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write after killing the leader: %v", err)
		}
	}
	if l := c.StreamLeader(ctx, js, "KV_T"); l == leader || l < 0 {
		t.Fatalf("leader after kill: %d (killed %d)", l, leader)
	}

	c.Restart(leader)
	// The restarted node catches up: read the key through it alone.
	nc1 := c.ConnectNode(t, leader)
	js1, err := jetstream.New(nc1)
	if err != nil {
		t.Fatal(err)
	}
	kv1, err := js1.KeyValue(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		e, err := kv1.Get(actx, "k")
		acancel()
		if err == nil && string(e.Value()) == "after" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("restarted node never read the new value: %v", err)
		}
	}
}

// TestPausedNodeIsCutOff freezes the meta leader and checks that a client
// connected only to it gets no answer, while the others elect a new meta
// leader and answer JetStream requests again.
func TestPausedNodeIsCutOff(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{})
	leader := c.MetaLeader(0)
	if leader < 0 {
		t.Fatal("no meta leader after WaitReady")
	}
	other := (leader + 1) % c.Size()
	only := c.ConnectNode(t, leader)
	survivor := c.ConnectNode(t, other)
	c.Pause(leader)
	if _, err := only.Request("$JS.API.INFO", nil, 500*time.Millisecond); err == nil {
		t.Fatal("a frozen node answered")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if l := c.MetaLeader(other); l >= 0 && l != leader {
			if _, err := survivor.Request("$JS.API.INFO", nil, 2*time.Second); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the survivors elected no new meta leader within 60s")
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	c.Resume(leader)
	c.WaitReady()
}
