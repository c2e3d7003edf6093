package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/natsconn"
	"github.com/segd/segd/examples/shop"
)

type demoOptions struct {
	users, days int
	seed        int64
	loc         *time.Location
	live        bool
	logger      *slog.Logger
	// historyPublished, if set, is called once the history is stored,
	// with the events stream's last sequence (segd serve --demo waits
	// for segd to apply it).
	historyPublished func(seq uint64)
}

// demoSubject is where the demo shop publishes.
const demoSubject = "segd.events.demo"

// demoPartSubjects are where it publishes partition-aware, for a segd of
// several partitions: segd.part.<N>.demo.
const demoPartSubjects = api.PartitionSubjectPrefix + "*.demo"

// demoPartSubject is partition n's demo subject.
func demoPartSubject(n int) string { return fmt.Sprintf("%s%d.demo", api.PartitionSubjectPrefix, n) }

// publishDemo runs the demo shop producer (examples/shop) on js. When the
// events stream already holds demo events (segd restarted on the same data
// dir), it goes straight to live events rather than publishing a second
// history.
func publishDemo(ctx context.Context, js jetstream.JetStream, o demoOptions) (int, error) {
	noBackfill := false
	partitions := 1
	// A producer may not read the stream (docs/security.md): its denied
	// request only times out, so do not wait long for it. It then
	// publishes mixed batches, which segd routes.
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if stream, err := js.Stream(sctx, bus.EventsStream); err == nil {
		if p, err := client.StreamPartitions(sctx, js); err == nil {
			partitions = p
		}
		for _, subj := range []string{demoSubject, demoPartSubjects} {
			if _, err := stream.GetLastMsgForSubject(sctx, subj); err == nil {
				noBackfill = true
			}
		}
		if noBackfill {
			o.logger.Info("demo: the stream already holds the demo history; publishing live events only")
		}
	}
	return shop.Run(ctx, js, shop.RunOptions{
		Subject: demoSubject, NoBackfill: noBackfill, Partitions: partitions, PartitionSubject: demoPartSubject,
		Users: o.users, Days: o.days, Seed: o.seed, Live: o.live, Location: o.loc,
		Progress: func(p shop.Progress) {
			if !p.Live && !noBackfill {
				o.logger.Info("demo: history published", "days", o.days, "users", o.users,
					"items", p.Generated, "stored", p.Stored, "took", p.Elapsed.Round(time.Millisecond))
				if o.historyPublished != nil {
					if stream, err := js.Stream(ctx, bus.EventsStream); err == nil {
						o.historyPublished(stream.CachedInfo().State.LastSeq)
					}
				}
				return
			}
			o.logger.Debug("demo: live events", "stored", p.Stored)
		},
	})
}

func newDemoCommand() *cobra.Command {
	var (
		conn natsconn.Settings
		o    demoOptions
		tz   string
		seed int64
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Publish a synthetic e-commerce stream to a running segd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return fmt.Errorf("--tz %q: %w", tz, err)
			}
			o.loc, o.seed = loc, seed
			o.logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			nc, err := connectCLI(conn, "segd-demo")
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = publishDemo(ctx, js, o)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	addConnFlags(f, &conn)
	f.IntVar(&o.users, "users", 3000, "users in the stream")
	f.IntVar(&o.days, "days", 28, "days of history, ending now")
	f.Int64Var(&seed, "seed", 1, "random seed: the same seed gives the same stream")
	f.BoolVar(&o.live, "live", false, "keep publishing live events until Ctrl-C")
	f.StringVar(&tz, "tz", "UTC", "the users' time zone, for their daily rhythm")
	return cmd
}
