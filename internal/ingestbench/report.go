package ingestbench

import (
	"fmt"
	"io"
	"time"
)

// WriteText writes the report as the table (markdown), with the
// freshness table after it.
func (r *IngestReport) WriteText(w io.Writer) {
	p := r.Published
	fmt.Fprintf(w, "segd catch-up: %d events (%d batches, %.0f MB) pre-published to SEGD_EVENTS, medians of %d runs\n",
		p.Events, p.Messages, float64(p.Bytes)/1e6, r.Runs)
	fmt.Fprintf(w, "machine: %s\n\n", r.Machine)
	fmt.Fprintln(w, "| rules | segd catch-up | plain consumer + encoding/json into []map[string]any | ratio | peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, row := range r.Rows {
		rss := formatBytes(row.PeakRSS)
		if !r.RSSMeasured {
			rss = "n/a (in-process)"
		}
		fmt.Fprintf(w, "| %d | %s events/s | %s events/s | %.2f× | %s |\n", row.Rules, formatRate(row.Rate), formatRate(r.JSONRate), row.Ratio, rss)
	}
	fmt.Fprint(w, "\nratio: the median of each run's rate over the encoding/json run just before it (")
	for i, row := range r.Rows {
		if i > 0 {
			fmt.Fprint(w, "; ")
		}
		fmt.Fprintf(w, "%d rules:", row.Rules)
		for _, x := range row.Ratios {
			fmt.Fprintf(w, " %.2f", x)
		}
	}
	fmt.Fprintln(w, ").")
	fmt.Fprintf(w, "A plain consumer that only reads and acks: %s events/s (%.1f× the encoding/json consumer).\n",
		formatRate(r.AckRate), r.AckRate/r.JSONRate)
	for _, row := range r.Rows {
		if row.Applied != uint64(p.Events) || row.Invalid != 0 {
			fmt.Fprintf(w, "warning: with %d rules segd counted %d events applied and %d invalid items, of %d published\n", row.Rules, row.Applied, row.Invalid, p.Events)
		}
	}
	if len(r.Freshness) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFreshness with %d rules (+ the probe segment), publish → ...: p50 / p99\n\n", r.FreshRules)
	fmt.Fprintln(w, "| rate | published | change notice | member.check true | plain JetStream consumer | segd behind at stop | segd applied |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, f := range r.Freshness {
		fmt.Fprintf(w, "| %s events/s | %s events/s | %s | %s | %s | %s | %s events/s |\n", formatRate(float64(f.Rate)), formatRate(f.Achieved),
			f.Notice, f.Check, f.Consumer, f.CatchUp.Round(time.Millisecond), formatRate(f.Applied))
	}
}

// String is "p50 / p99 (n=N)".
func (l Latency) String() string {
	if l.N == 0 {
		return "none"
	}
	return fmt.Sprintf("%s / %s (n=%d)", formatDuration(l.P50), formatDuration(l.P99), l.N)
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

func formatRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.0fk", r/1e3)
	default:
		return fmt.Sprintf("%.0f", r)
	}
}
