package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
)

// startExampleSegd starts a segd with one segment and returns it. In
// production segd runs on its own (segd serve) and clients only connect.
func startExampleSegd(dir string) (*host.Server, error) {
	rulesFile := filepath.Join(dir, "rules.yaml")
	err := os.WriteFile(rulesFile, []byte(`
segments:
  - id: big_spenders
    did: {event: checkout, where: 'props.amount > 100', last: 7d}
`), 0o644)
	if err != nil {
		return nil, err
	}
	return host.Start(context.Background(), host.Config{DataDir: dir, Listen: "127.0.0.1:0",
		RulePaths: []string{rulesFile}, NoSnapshots: true})
}

// A producer publishes events into segd's stream; a service asks segd, over
// NATS, who is in which segment.
func Example() {
	dir, err := os.MkdirTemp("", "segd-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := startExampleSegd(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC().Format(time.RFC3339)
	ack, err := client.PublishBatch(ctx, js, "segd.events.shop", []api.Item{
		{User: "ann", Event: "checkout", Time: now, Props: map[string]any{"amount": 250}},
		{User: "bob", Event: "checkout", Time: now, Props: map[string]any{"amount": 20}},
	}, "shop-1:1") // a retry with the same id is dropped as a duplicate
	if err != nil {
		log.Fatal(err)
	}

	c := client.New(nc, client.WithTimeout(5*time.Second))
	// segd applies the stream asynchronously: wait until it has seen the batch.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := c.Status(ctx)
		if err == nil && st.LastSeq >= ack.Sequence {
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("batch not applied: %v", err)
		}
	}
	for _, u := range []string{"ann", "bob"} {
		in, err := c.IsMember(ctx, u, "big_spenders")
		fmt.Println(u, in, err)
	}
	segs, _ := c.UserSegments(ctx, "ann")
	n, _ := c.SegmentCount(ctx, "big_spenders")
	fmt.Println(segs, n)
	_, err = c.IsMember(ctx, "ann", "nope")
	fmt.Println(client.IsNotFound(err))
	// Output:
	// ann true <nil>
	// bob false <nil>
	// [big_spenders] 1
	// true
}

// PublishBatch splits a batch too large for one message into parts that
// each fit, with message ids derived from the batch's, so that a retry of
// the whole batch stores nothing twice.
func ExamplePublishBatch() {
	dir, err := os.MkdirTemp("", "segd-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: dir, NoListen: true, MaxPayload: 4096})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := e.Connect()
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.StreamConfig{}); err != nil {
		log.Fatal(err)
	}
	var items []api.Item
	for i := range 100 {
		items = append(items, api.Item{User: fmt.Sprint("user-", i), Event: "view", Time: "2026-11-28T10:15:00Z"})
	}
	ack, err := client.PublishBatch(ctx, js, "segd.events.web", items, "web-1:42")
	fmt.Println(ack.Sequence > 1, err) // several messages
	ack, err = client.PublishBatch(ctx, js, "segd.events.web", items, "web-1:42")
	fmt.Println(ack.Duplicate, err) // the retry
	// Output:
	// true <nil>
	// true <nil>
}
