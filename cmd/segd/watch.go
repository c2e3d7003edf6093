package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/natsconn"
)

func newWatchCommand() *cobra.Command {
	var f clientFlags
	var durable, since string
	var fromStart bool
	cmd := &cobra.Command{
		Use:   "watch [SEGMENT...]",
		Short: "Tail the change feed: users entering and leaving segments (all segments if none given)",
		Long: `Print users entering and leaving segments as segd publishes them to the
JetStream stream SEGD_CHANGES, until Ctrl-C. By default it starts at the
feed's end; --from-start starts at the oldest change kept (7 days), --since
at a time (RFC 3339, or a duration back from now such as 2h), and --durable
NAME resumes where the last watch with that name stopped. It says on
stderr where in the feed it starts; an unknown segment is an error at once.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := client.ChangeConsumerOptions{Durable: durable, Segments: args, DeliverNew: !fromStart}
			if since != "" {
				if fromStart {
					return errors.New("--since and --from-start: give one")
				}
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				opts.StartTime, opts.DeliverNew = t, false
			}
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
			start, err := watchStart(ctx, f, nc, js, args, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			c, err := client.ConsumeChanges(ctx, js, opts,
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
			what := "every segment"
			if len(args) > 0 {
				what = strings.Join(args, ", ")
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "connected to %s: watching %s, %s; Ctrl-C stops\n", nc.ConnectedUrlRedacted(), what, start)
			<-ctx.Done()
			c.Stop()
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&durable, "durable", "", "a consumer name that remembers the position between runs")
	cmd.Flags().BoolVar(&fromStart, "from-start", false, "start at the oldest change kept instead of the end")
	cmd.Flags().BoolVar(&fromStart, "all", false, "the same as --from-start")
	cmd.Flags().StringVar(&since, "since", "", "start at the first change at or after this time: RFC 3339, or a duration back from now (2h)")
	_ = cmd.Flags().MarkHidden("all")
	return cmd
}

// parseSince reads --since: an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-11-28T09:00:00Z) or a duration back from now (2h)", s)
}

// watchStart checks that the segments exist and describes where in the
// feed the watch starts.
func watchStart(ctx context.Context, f clientFlags, nc *nats.Conn, js jetstream.JetStream, segments []string, opts client.ChangeConsumerOptions) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if len(segments) > 0 {
		list, err := client.New(nc, client.WithTimeout(f.timeout)).Segments(ctx)
		if err != nil {
			return "", err
		}
		known := map[string]bool{}
		for _, s := range list {
			known[s.ID] = true
		}
		for _, s := range segments {
			if !known[s] {
				return "", fmt.Errorf("segment %q is not defined (segd segment ls lists them)", s)
			}
		}
	}
	stream, err := js.Stream(ctx, api.ChangesStream)
	if err != nil {
		return "", fmt.Errorf("segd change feed (%s): %w", api.ChangesStream, err)
	}
	st := stream.CachedInfo().State
	if opts.Durable != "" {
		if cons, err := js.Consumer(ctx, api.ChangesStream, opts.Durable); err == nil {
			return fmt.Sprintf("resuming %s after feed message %d", opts.Durable, cons.CachedInfo().AckFloor.Stream), nil
		}
	}
	switch {
	case !opts.StartTime.IsZero():
		return fmt.Sprintf("from the first change at or after %s (the feed holds messages %d..%d)", opts.StartTime.Format(time.RFC3339), st.FirstSeq, st.LastSeq), nil
	case opts.DeliverNew:
		return fmt.Sprintf("from the feed's end (after message %d): new changes only", st.LastSeq), nil
	case st.Msgs == 0:
		return "from the start of the feed, which is empty", nil
	}
	return fmt.Sprintf("from the oldest change kept (message %d of %s, %s)", st.FirstSeq, st.FirstTime.Format(time.RFC3339), plural(int(st.Msgs), "message")), nil
}
