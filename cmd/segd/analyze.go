package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// analyzeFlags are the flags every analysis shares.
type analyzeFlags struct {
	clientFlags
	segments []string
	from, to string
}

func (f *analyzeFlags) registerRange(cmd *cobra.Command) {
	cmd.Flags().StringSliceVarP(&f.segments, "segment", "s", nil, "segments to compare with all users (repeat, or comma-separated)")
	cmd.Flags().StringVar(&f.from, "from", "", "first day, YYYY-MM-DD (default 29 days before --to)")
	cmd.Flags().StringVar(&f.to, "to", "", "last day, YYYY-MM-DD (default today)")
}

func newAnalyzeCommand() *cobra.Command {
	var f analyzeFlags
	cmd := &cobra.Command{
		Use:   "analyze",
		Short: "Events, funnels, retention and size trends per segment, beside all users",
		Long: `Analyses answered by a running segd, per segment and side by side with all
users (*). Days are calendar days in segd's time zone. --json prints the reply.`,
	}
	f.register(cmd)

	var measures []string
	events := &cobra.Command{
		Use:   "events EVENT...",
		Short: "Daily series of events: uniques, total, sum:PROP, at_least:N",
		Example: `  segd analyze events checkout pay -s vip --measure uniques,total,sum:amount
  segd analyze events page_view --from 2026-11-01 --to 2026-11-28 --measure at_least:3`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: args, Segments: f.segments, From: f.from, To: f.to, Measures: measures})
			}, func(w io.Writer, res any) { printEvents(w, res.(*api.AnalysisEventsReply)) })
		},
	}
	events.Flags().StringSliceVarP(&measures, "measure", "m", nil, "measures: uniques (default), total, sum:PROP, at_least:N")
	f.registerRange(events)

	var window, mode string
	funnel := &cobra.Command{
		Use:   "funnel STEP...",
		Short: "Users reaching each step of a funnel (ClickHouse windowFunnel semantics)",
		Example: `  segd analyze funnel page_view add_to_cart checkout pay --window 7d -s vip,young_men
  segd analyze funnel search page_view --window 30m --mode strict_order`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			steps := make([]api.FunnelStep, len(args))
			for i, a := range args {
				steps[i] = api.FunnelStep{Event: a}
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: steps, Window: window, Mode: mode, Segments: f.segments, From: f.from, To: f.to})
			}, func(w io.Writer, res any) { printFunnel(w, res.(*api.AnalysisFunnelReply)) })
		},
	}
	funnel.Flags().StringVarP(&window, "window", "w", "7d", "how long after step 1 the last step may come: 7d, 36h, 90m")
	funnel.Flags().StringVar(&mode, "mode", "default", "default, or strict_order, strict_deduplication, strict_increase (comma-separated)")
	f.registerRange(funnel)

	var days int
	var retMode string
	var counts bool
	retention := &cobra.Command{
		Use:   "retention START_EVENT [RETURN_EVENT]",
		Short: "Retention cohorts per calendar day, as a triangle",
		Example: `  segd analyze retention signup page_view --days 7 -s vip
  segd analyze retention page_view --mode recurring --counts`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.AnalysisRetentionRequest{StartEvent: args[0], Days: days, Mode: retMode, Segments: f.segments, From: f.from, To: f.to}
			if len(args) == 2 {
				req.ReturnEvent = args[1]
			}
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.AnalyzeRetention(ctx, req)
			}, func(w io.Writer, res any) { printRetention(w, res.(*api.AnalysisRetentionReply), counts) })
		},
	}
	retention.Flags().IntVar(&days, "days", 7, "days after each cohort day to follow")
	retention.Flags().StringVar(&retMode, "mode", api.RetentionFirstTime, "first_time or recurring")
	retention.Flags().BoolVar(&counts, "counts", false, "print user counts instead of percentages")
	f.registerRange(retention)

	trend := &cobra.Command{
		Use:     "trend [SEGMENT...]",
		Short:   "Segment sizes per day, beside all users",
		Example: `  segd analyze trend vip young_men --from 2026-11-01`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *client.Client) (any, error) {
				return c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{Segments: append(args, f.segments...), From: f.from, To: f.to})
			}, func(w io.Writer, res any) { printTrend(w, res.(*api.AnalysisTrendReply)) })
		},
	}
	f.registerRange(trend)

	cmd.AddCommand(events, funnel, retention, trend)
	return cmd
}

// segmentLabel names a column: the baseline reads "all users".
func segmentLabel(s string) string {
	if s == api.AllUsers {
		return "all users"
	}
	return s
}

func printEvents(w io.Writer, r *api.AnalysisEventsReply) {
	// One block per (event, measure), a column per segment.
	type key struct{ event, measure string }
	var keys []key
	cols := map[key][]api.EventSeries{}
	for _, s := range r.Series {
		k := key{s.Event, s.Measure}
		if _, ok := cols[k]; !ok {
			keys = append(keys, k)
		}
		cols[k] = append(cols[k], s)
	}
	for i, k := range keys {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s: %s\n", k.event, k.measure)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "DAY\t")
		for _, s := range cols[k] {
			fmt.Fprintf(tw, "%s\t", strings.ToUpper(segmentLabel(s.Segment)))
		}
		fmt.Fprintln(tw)
		for d, day := range r.Days {
			fmt.Fprintf(tw, "%s\t", day)
			for _, s := range cols[k] {
				fmt.Fprintf(tw, "%s\t", number(s.Values[d]))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}

// number prints integers without decimals and sums with two.
func number(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

func printFunnel(w io.Writer, r *api.AnalysisFunnelReply) {
	fmt.Fprintf(w, "funnel %s..%s, window %s, mode %s\n", r.From, r.To, r.Window, r.Mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "STEP\t")
	for _, s := range r.Segments {
		fmt.Fprintf(tw, "%s\t%%\t", strings.ToUpper(segmentLabel(s.Segment)))
	}
	fmt.Fprintln(tw)
	for k, step := range r.Steps {
		fmt.Fprintf(tw, "%d %s\t", k+1, step.Event)
		for _, s := range r.Segments {
			fmt.Fprintf(tw, "%d\t%.1f%%\t", s.Steps[k].Users, 100*s.Steps[k].Conversion)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func printRetention(w io.Writer, r *api.AnalysisRetentionReply, counts bool) {
	for i, s := range r.Segments {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s (%s)\n", segmentLabel(s.Segment), r.Mode)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "COHORT\tUSERS\t")
		for k := 1; k <= r.Days; k++ {
			fmt.Fprintf(tw, "DAY %d\t", k)
		}
		fmt.Fprintln(tw)
		for _, c := range s.Cohorts {
			fmt.Fprintf(tw, "%s\t%d\t", c.Day, c.Size)
			for _, n := range c.Retained {
				switch {
				case counts:
					fmt.Fprintf(tw, "%d\t", n)
				case c.Size == 0:
					fmt.Fprint(tw, "-\t")
				default:
					fmt.Fprintf(tw, "%.1f%%\t", 100*float64(n)/float64(c.Size))
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}

func printTrend(w io.Writer, r *api.AnalysisTrendReply) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "DAY\t")
	for _, s := range r.Segments {
		fmt.Fprintf(tw, "%s\t+/-\t", strings.ToUpper(segmentLabel(s.Segment)))
	}
	fmt.Fprintln(tw)
	for d, day := range r.Days {
		fmt.Fprintf(tw, "%s\t", day)
		for _, s := range r.Segments {
			fmt.Fprintf(tw, "%d\t+%d/-%d\t", s.Sizes[d], s.Entered[d], s.Left[d])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, s := range r.Segments {
		if s.Segment == api.AllUsers {
			continue
		}
		days := make([]api.HistoryDay, len(r.Days))
		for i, d := range r.Days {
			days[i].Day = d
		}
		if note := historyNote(s.HistoryStart, days); note != "" {
			fmt.Fprintf(w, "%s: %s\n", s.Segment, note)
		}
	}
}
