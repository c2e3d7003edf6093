// Command producer publishes a synthetic e-commerce event stream (package
// examples/shop) to segd over NATS JetStream: it backfills --days of history
// ending now, then with --live keeps publishing events for the present at a
// few per second until interrupted.
//
//	go run ./examples/producer --nats nats://127.0.0.1:4222 --users 3000 --days 28 --seed 1 --batch 500 --live
//
// Batches are JSON arrays of items on --subject with a Nats-Msg-Id of
// "demo-<seed>-<n>", so running the backfill again within the stream's
// duplicate window stores nothing twice. A stream must capture the subject;
// --stream creates one if it does not exist.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/examples/shop"
)

func main() {
	var (
		url      = flag.String("nats", nats.DefaultURL, "NATS server URL")
		users    = flag.Int("users", 3000, "number of users")
		days     = flag.Int("days", 28, "days of history to backfill, ending now")
		seed     = flag.Int64("seed", 1, "random seed; the same seed gives the same stream")
		batch    = flag.Int("batch", 500, "items per batch (message)")
		subject  = flag.String("subject", api.EventsSubjectPrefix+"demo", "subject to publish on")
		stream   = flag.String("stream", "", "create this JetStream stream on "+api.EventsSubjectPrefix+"> if missing")
		live     = flag.Bool("live", false, "after the backfill, keep publishing live events until Ctrl-C")
		activity = flag.Float64("live-activity", 20, "session rate multiplier in live mode (20 gives a few events per second with 3000 users)")
		tz       = flag.String("tz", "UTC", "users' time zone (IANA name), for their daily rhythm")
	)
	flag.Parse()
	log.SetFlags(0)
	if !strings.HasPrefix(*subject, api.EventsSubjectPrefix) {
		log.Fatalf("producer: subject %q is not under %s", *subject, api.EventsSubjectPrefix)
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		log.Fatalf("producer: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *url, *stream, *subject, *users, *days, *seed, *batch, *live, *activity, loc); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatalf("producer: %v", err)
	}
}

func run(ctx context.Context, url, stream, subject string, users, days int, seed int64, batch int, live bool, activity float64, loc *time.Location) error {
	nc, err := nats.Connect(url, nats.Name("segd-demo-producer"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if stream != "" {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: stream, Subjects: []string{api.EventsSubjectPrefix + ">"},
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", stream, err)
		}
	}
	_, err = shop.Run(ctx, js, shop.RunOptions{
		Subject: subject, Users: users, Days: days, Seed: seed, Batch: batch,
		Live: live, Activity: activity, Location: loc,
		Progress: func(p shop.Progress) {
			if !p.Live {
				fmt.Printf("backfill: %d days, %d users, %d items generated, %d stored (%.0f items/s) on %s in %s\n",
					days, users, p.Generated, p.Stored, float64(p.Generated)/p.Elapsed.Seconds(), subject, p.Elapsed.Round(time.Millisecond))
				return
			}
			fmt.Printf("\rlive: %d items published, event time %s ", p.Stored, p.EventTime.Format(time.TimeOnly))
		},
	})
	return err
}
