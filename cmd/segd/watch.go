package main

import (
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/natsconn"
)

func newWatchCommand() *cobra.Command {
	var f clientFlags
	var durable string
	var all bool
	cmd := &cobra.Command{
		Use:   "watch [SEGMENT...]",
		Short: "Tail the change feed: users entering and leaving segments (all segments if none given)",
		Long: `Print users entering and leaving segments as segd publishes them to the
JetStream stream SEGD_CHANGES, until Ctrl-C. By default it starts at the
feed's end; --all starts at the oldest change kept (7 days), and --durable
NAME resumes where the last watch with that name stopped.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, err := f.connect("segd-watch")
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			c, err := client.ConsumeChanges(ctx, js, client.ChangeConsumerOptions{Durable: durable, Segments: args, DeliverNew: !all},
				func(m client.ChangeMsg) error {
					if f.json {
						return enc.Encode(m.Change)
					}
					verb := "entered"
					if m.Change.Change != "enter" {
						verb = "left   "
					}
					_, err := fmt.Fprintf(out, "%s  %s %s  %s\n", m.Time, verb, m.Segment, m.User)
					return err
				})
			if err != nil {
				return natsconn.Refused(nc, err)
			}
			<-ctx.Done()
			c.Stop()
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&durable, "durable", "", "a consumer name that remembers the position between runs")
	cmd.Flags().BoolVar(&all, "all", false, "start at the oldest change kept instead of the end")
	return cmd
}
