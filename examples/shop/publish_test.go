package shop

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/api"
)

func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: t.TempDir(), Port: -1, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestPublish(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{api.EventsSubjectPrefix + ">"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Seed: 2, Users: 200, Start: testEnd.Add(-7 * 24 * time.Hour), End: testEnd}
	want := len(collect(New(cfg)))
	const batch = 100
	batches := (want + batch - 1) / batch

	n, err := Publish(ctx, js, "segd.events.test", New(cfg).All(), batch, "test-2")
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("published %d items, want %d", n, want)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != uint64(batches) {
		t.Fatalf("stream has %d messages, want %d", got, batches)
	}

	// Republishing the same batches with the same ids is deduplicated.
	n, err = Publish(ctx, js, "segd.events.test", New(cfg).All(), batch, "test-2")
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("republish stored %d items, want 0", n)
	}
	info, err = stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != uint64(batches) {
		t.Fatalf("after republish stream has %d messages, want %d", got, batches)
	}

	// The first message is a JSON array of items with its id.
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get(jetstream.MsgIDHeader); id != "test-2-1" {
		t.Fatalf("msg id %q", id)
	}
	var items []api.Item
	if err := json.Unmarshal(msg.Data, &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != batch || items[0].User == "" || items[0].Profile == nil {
		t.Fatalf("first batch: %d items, first %+v", len(items), items[0])
	}
}

func TestPublishNoStream(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{Seed: 2, Users: 20, Start: testEnd.Add(-24 * time.Hour), End: testEnd}
	n, err := Publish(ctx, js, "segd.events.nowhere", New(cfg).All(), 10, "x")
	if err == nil || n != 0 {
		t.Fatalf("publish without a stream: %d, %v", n, err)
	}
}

func TestPublishCanceled(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := Config{Seed: 2, Users: 20, Start: testEnd.Add(-24 * time.Hour), End: testEnd}
	if _, err := Publish(ctx, js, "segd.events.x", New(cfg).All(), 10, "x"); err != context.Canceled {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// Run publishes the history once; with NoBackfill (a restarted demo) it
// publishes none.
func TestRunBackfillOnce(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{api.EventsSubjectPrefix + ">"}})
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testEnd }
	n, err := Run(ctx, js, RunOptions{Users: 50, Days: 3, Seed: 4, Now: now})
	if err != nil || n == 0 {
		t.Fatalf("Run stored %d, %v", n, err)
	}
	n, err = Run(ctx, js, RunOptions{Users: 50, Days: 3, Seed: 4, Now: now, NoBackfill: true})
	if err != nil || n != 0 {
		t.Fatalf("Run with NoBackfill stored %d, %v; want 0", n, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		t.Fatal("the stream is empty")
	}
}

func TestPublishPartitioned(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{api.PartitionSubjectPrefix + ">"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Seed: 3, Users: 200, Start: testEnd.Add(-3 * 24 * time.Hour), End: testEnd}
	want := len(collect(New(cfg)))
	const parts = 3
	n, err := PublishPartitioned(ctx, js, api.PartitionSubject, parts, New(cfg).All(), 100, "p")
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("published %d items, want %d", n, want)
	}
	// Every message holds the users of its subject's partition only, and
	// together they hold every item.
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	items := 0
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var batch []api.Item
		if err := json.Unmarshal(m.Data, &batch); err != nil {
			t.Fatal(err)
		}
		for _, it := range batch {
			if got := api.PartitionSubject(api.Partition(it.User, parts)); got != m.Subject {
				t.Fatalf("user %s on %s, belongs on %s", it.User, m.Subject, got)
			}
		}
		items += len(batch)
	}
	if items != want {
		t.Fatalf("the stream holds %d items, want %d", items, want)
	}
	if n, err := PublishPartitioned(ctx, js, api.PartitionSubject, parts, New(cfg).All(), 100, "p"); err != nil || n != 0 {
		t.Fatalf("republish stored %d items (%v), want 0: the ids deduplicate", n, err)
	}
}
