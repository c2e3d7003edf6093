package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/natsconn"
)

// clientFlags are the flags of every command that talks to a running segd.
type clientFlags struct {
	conn    natsconn.Settings
	timeout time.Duration
	json    bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	addConnFlags(cmd.PersistentFlags(), &f.conn)
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for a reply")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print the reply as JSON, for scripts")
}

// call connects, runs fn with a client and prints its result: as JSON with
// --json, else with human.
func (f *clientFlags) call(cmd *cobra.Command, fn func(context.Context, *client.Client) (any, error), human func(io.Writer, any)) error {
	nc, err := f.connect("segd-cli")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	stop := showElapsed(cmd.ErrOrStderr(), "waiting for segd ("+cmd.CommandPath()+")")
	res, err := fn(ctx, client.New(nc, client.WithTimeout(f.timeout)))
	stop()
	if err != nil {
		return natsconn.Refused(nc, err)
	}
	out := cmd.OutOrStdout()
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	human(out, res)
	return nil
}

func newMemberCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: "member", Short: "Ask about a user's membership"}
	f.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "check USER SEGMENT",
		Short: "Is USER in SEGMENT, and since when?",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.MemberCheck(ctx, args[0], args[1])
			}, func(w io.Writer, res any) {
				r := res.(*api.MemberCheckReply)
				if r.Member {
					fmt.Fprintf(w, "%s is in %s since %s\n", args[0], args[1], r.Since)
				} else {
					fmt.Fprintf(w, "%s is not in %s\n", args[0], args[1])
				}
			})
		},
	}, &cobra.Command{
		Use:   "segments USER",
		Short: "Which segments is USER in, and since when?",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				ms, err := c.UserMemberships(ctx, args[0])
				if err != nil {
					return nil, err
				}
				rep := api.MemberSegmentsReply{Segments: []string{}, Memberships: ms}
				for _, m := range ms {
					rep.Segments = append(rep.Segments, m.Segment)
				}
				return rep, nil
			}, func(w io.Writer, res any) {
				ms := res.(api.MemberSegmentsReply).Memberships
				if len(ms) == 0 {
					fmt.Fprintf(w, "%s is in no segment\n", args[0])
					return
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SEGMENT\tSINCE")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%s\n", m.Segment, m.Since)
				}
				tw.Flush()
			})
		},
	})
	return cmd
}

func newSegmentCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: "segment", Short: "Segments: list, inspect, page, export, query, history, upload"}
	f.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "Every segment with its kind, size and status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				segs, err := c.Segments(ctx)
				return segs, err
			}, func(w io.Writer, res any) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SEGMENT\tKIND\tSIZE\tSTATUS\tDESCRIPTION")
				for _, s := range res.([]apiSegment) {
					status := s.Status
					if s.Error != "" {
						status += ": " + s.Error
					} else if s.EvalErrors > 0 {
						status += fmt.Sprintf(" (%d items not judged)", s.EvalErrors)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.ID, s.Kind, s.Size, status, s.Description)
				}
				tw.Flush()
			})
		},
	}, newSegmentGetCommand(&f), newSegmentMembersCommand(&f), newSegmentExportCommand(&f), newSegmentQueryCommand(&f),
		newSegmentHistoryCommand(&f), newSegmentUploadCommand(&f), newSegmentPreviewCommand(&f), &cobra.Command{
			Use:   "count SEGMENT",
			Short: "The number of users in SEGMENT",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
					n, err := c.SegmentCount(ctx, args[0])
					return map[string]uint64{"count": n}, err
				}, func(w io.Writer, res any) {
					fmt.Fprintln(w, res.(map[string]uint64)["count"])
				})
			},
		})
	return cmd
}

func newStatusCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Ingest progress of a running segd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.Status(ctx)
			}, func(w io.Writer, res any) { printStatus(w, res.(*api.StatusReply)) })
		},
	}
	f.register(cmd)
	return cmd
}
