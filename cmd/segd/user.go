package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

func newUserCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: "user", Short: "What segd knows about one user"}
	f.register(cmd)
	var req api.UserGetRequest
	show := &cobra.Command{
		Use:   "show USER",
		Short: "USER's profile, segments, recent events and, with --segment, why they are in it or not",
		Long: `Show what segd knows about USER: the profile, every segment they are in
and since when, and their events from --from to --to (newest first, --limit
at a time; the reply says the --offset of the next page).

With --segment, also the value of each condition of that segment's rule for
USER now, e.g. "checkout count in last 7d = 4 (>= 3 holds)".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.User = args[0]
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.User(ctx, req)
			}, func(w io.Writer, res any) { printUser(w, res.(*api.UserGetReply)) })
		},
	}
	fl := show.Flags()
	fl.StringVar(&req.Segment, "segment", "", "explain USER's membership of this segment")
	fl.StringVar(&req.From, "from", "", "first day of events, YYYY-MM-DD (default: 6 days before --to)")
	fl.StringVar(&req.To, "to", "", "last day of events, YYYY-MM-DD (default: today)")
	fl.IntVar(&req.Limit, "limit", 0, "events to show (default 100, at most 1000)")
	fl.IntVar(&req.Offset, "offset", 0, "events to skip, newest first (a page's next offset)")
	cmd.AddCommand(show)
	return cmd
}

// printUser writes a user.get reply for people.
func printUser(w io.Writer, r *api.UserGetReply) {
	if !r.Known {
		fmt.Fprintf(w, "segd has never seen user %s\n", r.User)
	} else {
		fmt.Fprintf(w, "user %s\n", r.User)
	}
	if len(r.Profile) > 0 {
		fmt.Fprintln(w, "\nprofile:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, k := range sortedKeys(r.Profile) {
			fmt.Fprintf(tw, "  %s\t%v\n", k, r.Profile[k])
		}
		tw.Flush()
	}
	if len(r.Segments) == 0 {
		fmt.Fprintln(w, "\nin no segment")
	} else {
		fmt.Fprintf(w, "\nin %s:\n", plural(len(r.Segments), "segment"))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, m := range r.Segments {
			fmt.Fprintf(tw, "  %s\tsince %s\n", m.Segment, m.Since)
		}
		tw.Flush()
	}
	if len(r.Unavailable) > 0 {
		fmt.Fprintf(w, "not served now (rebuilding or stale): %s\n", strings.Join(r.Unavailable, ", "))
	}
	if len(r.Events) == 0 {
		fmt.Fprintf(w, "\nno events from %s to %s\n", r.From, r.To)
	} else {
		fmt.Fprintf(w, "\n%s from %s to %s, newest first:\n", plural(len(r.Events), "event"), r.From, r.To)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range r.Events {
			fmt.Fprintf(tw, "  %s\t%s\n", e.Time, e.Event)
		}
		tw.Flush()
		if r.NextOffset > 0 {
			fmt.Fprintf(w, "  ... more: --offset %d\n", r.NextOffset)
		}
	}
	if ex := r.Explain; ex != nil {
		verdict := "is not"
		if ex.Member {
			verdict = "is"
		}
		fmt.Fprintf(w, "\n%s %s in %s:\n", r.User, verdict, ex.Segment)
		for _, c := range ex.Conditions {
			fmt.Fprintf(w, "  %s%s\n", strings.Repeat("  ", c.Depth), c.Text)
		}
		if ex.Holds != ex.Member {
			fmt.Fprintln(w, "  (the rule's value now differs from the membership served: the segment is stale or rebuilding, or the clock just moved)")
		}
	}
}

// plural writes "1 segment", "2 segments".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
