package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/segd/segd/internal/ingestbench"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure segd end to end against baselines in the same run (docs/operations.md, \"Measured\")",
	}
	cmd.AddCommand(newBenchIngestCommand(), newBenchMemberCommand(), newBenchEchoServerCommand())
	return cmd
}

// newBenchEchoServerCommand is the hidden `segd bench echo-server`: `segd
// bench member` runs its echo baseline with it, in a process of its own as
// the measured segd is. It prints a line once it serves and runs until
// SIGTERM or until its stdin closes (the bench exited).
func newBenchEchoServerCommand() *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:    "echo-server",
		Short:  "Serve the bare micro echo `segd bench member` compares with (run by the bench)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				_, _ = io.Copy(io.Discard, cmd.InOrStdin())
				cancel()
			}()
			return ingestbench.RunEchoServer(ctx, url, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&url, "nats", "", "the NATS server to serve on")
	_ = cmd.MarkFlagRequired("nats")
	return cmd
}

func newBenchIngestCommand() *cobra.Command {
	var (
		cfg      ingestbench.IngestConfig
		asJSON   bool
		inProc   bool
		fresh    []int
		freshDur time.Duration
		segdPath string
	)
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Time segd's catch-up with 1, 6 and 100 rules beside plain JetStream consumers, and publish-to-membership freshness",
		Long: `Generate a deterministic stream, pre-publish it to SEGD_EVENTS on an embedded
NATS server (or --nats, a scratch server: its segd streams are deleted), and
time, in each of --runs rounds: a plain consumer that reads and acks, a plain
consumer that also decodes with encoding/json, and segd catching up from an
empty data dir with each rule set (a fresh 'segd serve' process per run, so
that its peak RSS is its own). Then, with --freshness rates, a producer
publishes live batches at each rate while segd ingests, and the report gives
publish → change notice and publish → member.check true beside a plain
consumer's publish → receive. Figures are medians; ratios are to the
encoding/json consumer of the same run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Segd, err = benchSegd(segdPath, inProc, false); err != nil {
				return err
			}
			if cfg.CPUProfile != "" && !inProc {
				return errors.New("--cpuprofile needs --in-process: it profiles this process")
			}
			cfg.Freshness.Rates, cfg.Freshness.Duration = fresh, freshDur
			cfg.Progress = cmd.ErrOrStderr()
			var rep *ingestbench.IngestReport
			rep, err = ingestbench.RunIngest(cmd.Context(), cfg)
			if rep != nil {
				if werr := writeBenchReport(cmd.OutOrStdout(), rep, asJSON); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Stream.Users, "users", 200000, "distinct users in the stream")
	f.IntVar(&cfg.Stream.Events, "events", 2130000, "events in the stream")
	f.IntVar(&cfg.Stream.BatchSize, "batch", 1000, "events per batch (message)")
	f.Int64Var(&cfg.Stream.Seed, "seed", 1, "the generator's seed")
	f.IntVar(&cfg.Stream.Days, "days", 14, "calendar days the events span, up to today")
	f.IntVar(&cfg.Runs, "runs", 3, "runs of each measurement; the report gives medians")
	f.IntSliceVar(&cfg.RuleSets, "rules", ingestbench.RuleSets, "rule sets to time, by number of segments (1, 6, or N generated segments routed by event name)")
	f.IntSliceVar(&fresh, "freshness", nil, "background rates (events/s) of the freshness run, e.g. 20000,100000 (none: skip it)")
	f.DurationVar(&freshDur, "freshness-duration", 10*time.Second, "how long each freshness rate is produced")
	f.IntVar(&cfg.Freshness.Rules, "freshness-rules", 6, "rule set of the freshness run")
	f.StringVar(&cfg.NATSURL, "nats", "", "a scratch NATS server with JetStream to use instead of an embedded one (its SEGD_* streams are deleted)")
	f.StringVar(&cfg.Dir, "dir", "", "where the embedded server's store, rules and data dirs go (default: a temporary directory, removed)")
	f.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on each run")
	f.StringVar(&segdPath, "segd", "", "the segd binary to measure, e.g. another build (default: this one)")
	f.BoolVar(&inProc, "in-process", false, "run segd in this process (no per-run RSS) instead of a 'segd serve' subprocess")
	f.StringVar(&cfg.CPUProfile, "cpuprofile", "", "with --in-process: write a CPU profile of each segd catch-up to PREFIX-<rules>rules-run<k>.pprof")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func newBenchMemberCommand() *cobra.Command {
	var (
		cfg      ingestbench.MemberConfig
		clients  []int
		requests int
		asJSON   bool
		inProc   bool
		segdPath string
	)
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Measure member.check and member.segments against the real engine beside a bare micro echo",
		Long: `Load a generated stream into segd (--users users, --rules segments), start a
bare micro echo service on the same NATS server, and measure member.check and
member.segments with each --clients count, idle and while a producer publishes
at --ingest-rate (and, with --in-process, while snapshots are written back to
back), each beside the echo with the same clients, measured alternately in rounds
(the figures are medians). The echo runs where segd runs: in a process of
its own ('segd bench echo-server'), or with --in-process in this one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Segd, err = benchSegd(segdPath, inProc, true); err != nil {
				return err
			}
			var rep *ingestbench.MemberReport
			rep, err = ingestbench.RunMember(cmd.Context(), cfg, clients, requests, cmd.ErrOrStderr())
			if rep != nil {
				if werr := writeBenchReport(cmd.OutOrStdout(), rep, asJSON); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Stream.Users, "users", 200000, "distinct users loaded")
	f.IntVar(&cfg.Stream.Events, "events", 0, "events loaded (default four per user)")
	f.Int64Var(&cfg.Stream.Seed, "seed", 1, "the generator's seed")
	f.IntVar(&cfg.Rules, "rules", 100, "segments (1, 6, or N generated segments routed by event name)")
	f.IntSliceVar(&clients, "clients", []int{1, 16}, "concurrent clients, one request at a time each")
	f.IntVar(&requests, "requests", 20000, "requests per measurement")
	f.IntVar(&cfg.IngestRate, "ingest-rate", 20000, "the background producer's rate while measuring during ingest, events/s")
	f.StringVar(&cfg.NATSURL, "nats", "", "a scratch NATS server with JetStream to use instead of an embedded one (its SEGD_* streams are deleted)")
	f.StringVar(&cfg.Dir, "dir", "", "where the embedded server's store and segd's data go (default: a temporary directory, removed)")
	f.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on loading the stream")
	f.StringVar(&segdPath, "segd", "", "the segd binary to measure, e.g. another build (default: this one)")
	f.BoolVar(&inProc, "in-process", false, "run segd in this process (adds the during-a-snapshot measurement)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// benchSegd is the segd a bench command measures: the binary at path (this
// one by default) run as 'segd serve' subprocesses, or host.Start in this
// process.
func benchSegd(path string, inProcess, snapshots bool) (ingestbench.Segd, error) {
	if inProcess {
		if path != "" {
			return nil, errors.New("--segd and --in-process exclude each other")
		}
		return ingestbench.InProcess{Snapshots: snapshots}, nil
	}
	if path == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		path = self
	}
	return ingestbench.Subprocess{Path: path}, nil
}

// writeBenchReport prints a bench report as indented JSON or as its text
// table (after a blank line, below the progress lines).
func writeBenchReport(w io.Writer, rep interface{ WriteText(io.Writer) }, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintln(w)
	rep.WriteText(w)
	return nil
}
