// Command consumer is a small service that reacts to segd's change feed:
// when a user enters a segment it "sends a reminder" (prints it), and when
// they leave it cancels it. It uses a durable JetStream consumer, so a
// restart resumes after the last change it handled, and no change is lost
// while it is down (within the feed's 7 days). Each message of the feed
// holds the changes of one segment and step (docs/api.md);
// client.ConsumeChanges hands them to react one at a time.
//
// Against `make run`:
//
//	go run ./examples/consumer --segment cart_abandoners
//
// prints, as shoppers add to their cart and do not check out:
//
//	send a reminder to u00012 (entered cart_abandoners at 2026-11-28T10:15:00Z)
//	cancel the reminder for u00012 (left cart_abandoners)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server of the running segd")
	segment := flag.String("segment", "cart_abandoners", "the segment to react to")
	durable := flag.String("durable", "", "consumer name that remembers the position (default reminders-SEGMENT)")
	flag.Parse()
	if *durable == "" {
		*durable = "reminders-" + *segment
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *segment, *durable, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run consumes the feed of one segment until ctx ends.
func run(ctx context.Context, url, segment, durable string, out io.Writer) error {
	nc, err := nats.Connect(url, nats.Name("segd-example-consumer"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// Make sure the segment exists before waiting for its changes.
	if _, err := client.New(nc).Segment(ctx, segment); err != nil {
		return err
	}
	c, err := client.ConsumeChanges(ctx, js, client.ChangeConsumerOptions{Durable: durable, Segments: []string{segment}},
		func(m client.ChangeMsg) error { return react(out, m) })
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "watching %s as %q; Ctrl-C stops\n", segment, durable)
	<-ctx.Done()
	c.Stop()
	return nil
}

// react handles one change. Returning an error would have the change
// delivered again after a delay, before any later one.
func react(out io.Writer, m client.ChangeMsg) error {
	switch m.Change.Change {
	case api.ChangeEnter:
		_, err := fmt.Fprintf(out, "send a reminder to %s (entered %s at %s)\n", m.User, m.Segment, m.Time)
		return err
	case api.ChangeExit:
		_, err := fmt.Fprintf(out, "cancel the reminder for %s (left %s)\n", m.User, m.Segment)
		return err
	}
	return nil
}
