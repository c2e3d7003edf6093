package ingestbench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// MemberReport is RunMember's result.
type MemberReport struct {
	Machine  string `json:"machine"`
	Users    int    `json:"users"`
	Segments int    `json:"segments"`
	Loaded   string `json:"loaded_in"`
	// EchoApart says the echo ran in a child process of its own, as segd
	// did; false when both ran in the bench's process.
	EchoApart bool `json:"echo_apart"`
	// Rounds is how many alternating rounds of echo and request each row
	// took; its figures are medians over them.
	Rounds int         `json:"rounds"`
	Rows   []MemberRow `json:"rows"`
}

// MemberRow is one request kind, mode and client count beside the echo,
// measured alternately in rounds.
type MemberRow struct {
	Request string `json:"request"`
	// Mode is "idle", "ingest" (a producer at the configured rate) or
	// "snapshot" (snapshots written back to back).
	Mode    string `json:"mode"`
	Clients int    `json:"clients"`
	Stats   Stats  `json:"stats"`
	Echo    Stats  `json:"echo"`
	// P50X and P99X are latency over the echo's (lower is better); RateX
	// throughput over the echo's (higher is better).
	P50X  float64 `json:"p50_x"`
	P99X  float64 `json:"p99_x"`
	RateX float64 `json:"rate_x"`
}

// Modes lists the modes this bench's segd supports: idle, ingest, and
// snapshot when it can be told to snapshot.
func (m *MemberBench) Modes() []string {
	if _, ok := m.proc.(Snapshotter); ok {
		return []string{"idle", "ingest", "snapshot"}
	}
	return []string{"idle", "ingest"}
}

// Background starts what mode measures reads during, and returns its stop,
// which returns a description of what happened meanwhile.
func (m *MemberBench) Background(ctx context.Context, mode string) (stop func() (string, error)) {
	switch mode {
	case "ingest":
		st := m.Ingest(ctx)
		return func() (string, error) {
			n, err := st()
			return fmt.Sprintf("%d events published", n), err
		}
	case "snapshot":
		snap := m.proc.(Snapshotter)
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var n int
		var err error
		wg.Go(func() {
			for ctx.Err() == nil {
				if serr := snap.Snapshot(ctx); serr != nil {
					if ctx.Err() == nil {
						err = serr
					}
					return
				}
				n++
			}
		})
		return func() (string, error) {
			cancel()
			wg.Wait()
			return fmt.Sprintf("%d snapshots written", n), err
		}
	}
	return func() (string, error) { return "", nil }
}

// MemberRounds is how many alternating rounds of echo and request
// MeasureBeside takes: the two share whatever the machine does meanwhile,
// and a median over rounds is not one unlucky stretch.
const MemberRounds = 7

// MeasureBeside measures the echo and r with the same clients in
// MemberRounds alternating rounds (echo first) of n/MemberRounds requests
// each, rounded up, and returns the medians over rounds of the absolute
// figures and of each round's ratios.
func (m *MemberBench) MeasureBeside(r Request, mode string, clients, n int) (MemberRow, error) {
	row := MemberRow{Request: r.String(), Mode: mode, Clients: clients}
	per := max((n+MemberRounds-1)/MemberRounds, 1)
	var echo, got []Stats
	var p50x, p99x, ratex []float64
	for range MemberRounds {
		e, err := m.Measure(Echo, clients, per)
		if err != nil {
			return row, err
		}
		g, err := m.Measure(r, clients, per)
		if err != nil {
			return row, err
		}
		echo, got = append(echo, e), append(got, g)
		p50x, p99x, ratex = append(p50x, g.P50/e.P50), append(p99x, g.P99/e.P99), append(ratex, g.Rate/e.Rate)
	}
	row.Stats, row.Echo = medianStats(got), medianStats(echo)
	row.P50X, row.P99X, row.RateX = median(p50x), median(p99x), median(ratex)
	return row, nil
}

// medianStats is the median of each figure over rounds, and their total
// requests.
func medianStats(ss []Stats) Stats {
	var p50, p99, rate []float64
	n := 0
	for _, s := range ss {
		p50, p99, rate = append(p50, s.P50), append(p99, s.P99), append(rate, s.Rate)
		n += s.Requests
	}
	return Stats{Requests: n, P50: median(p50), P99: median(p99), Rate: median(rate)}
}

// RunMember measures member.check and member.segments with each client
// count, idle and in every other mode the segd supports, n requests each.
func RunMember(ctx context.Context, cfg MemberConfig, clients []int, n int, progress io.Writer) (*MemberReport, error) {
	if progress == nil {
		progress = io.Discard
	}
	for _, c := range clients {
		cfg.MaxClients = max(cfg.MaxClients, c)
	}
	fmt.Fprintf(progress, "loading the stream into segd...\n")
	m, err := NewMemberBench(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	rep := &MemberReport{Machine: Machine(), Users: m.Users(), Segments: len(m.Segments()), Loaded: m.Loaded.Round(time.Millisecond).String(),
		EchoApart: m.EchoApart(), Rounds: MemberRounds}
	fmt.Fprintf(progress, "%d users, %d segments loaded in %s\n", rep.Users, rep.Segments, rep.Loaded)
	for _, mode := range m.Modes() {
		for _, r := range []Request{MemberCheck, MemberSegments} {
			for _, c := range clients {
				stop := m.Background(ctx, mode)
				row, err := m.MeasureBeside(r, mode, c, n)
				what, berr := stop()
				if err == nil {
					err = berr
				}
				if err != nil {
					return rep, fmt.Errorf("%s %s, %d clients: %w", mode, r, c, err)
				}
				fmt.Fprintf(progress, "%s %s, %d clients: p50 %.0f µs (echo %.0f), %.0f req/s (echo %.0f) %s\n",
					mode, r, c, row.Stats.P50, row.Echo.P50, row.Stats.Rate, row.Echo.Rate, what)
				rep.Rows = append(rep.Rows, row)
			}
		}
	}
	return rep, nil
}

// WriteText writes the report as a markdown table.
func (r *MemberReport) WriteText(w io.Writer) {
	where := "in the bench process, as segd is"
	if r.EchoApart {
		where = "in a process of its own, as segd is"
	}
	fmt.Fprintf(w, "member requests against the real engine: %d users, %d segments (loaded in %s)\nmachine: %s\n", r.Users, r.Segments, r.Loaded, r.Machine)
	fmt.Fprintf(w, "beside a bare micro echo %s; medians of %d alternating rounds\n\n", where, r.Rounds)
	fmt.Fprintln(w, "| request | while | clients | p50 | p99 | req/s | echo p50 / p99 / req/s | p50 × echo | req/s × echo |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "| %s | %s | %d | %.0f µs | %.0f µs | %s | %.0f µs / %.0f µs / %s | %.2f× | %.2f× |\n", row.Request, row.Mode, row.Clients,
			row.Stats.P50, row.Stats.P99, formatRate(row.Stats.Rate), row.Echo.P50, row.Echo.P99, formatRate(row.Echo.Rate), row.P50X, row.RateX)
	}
}
