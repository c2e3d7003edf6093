package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/natsconn"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/host"
)

func newServeCommand() *cobra.Command { return newServeCommandWith(host.Start) }

// newServeCommandWith is serve starting segd with start (host.Start; tests
// read the configuration the flags made).
func newServeCommandWith(start func(context.Context, host.Config) (*host.Server, error)) *cobra.Command {
	var (
		cfg       host.Config
		conn      natsconn.Settings
		auth      embeddedAuthFlags
		tz        string
		logLevel  string
		logFormat string
		schema    string
		demo      bool
		demoUsers int
		demoDays  int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run segd: embedded NATS (or --nats), the rules, and the membership API",
		Long: `Run segd until Ctrl-C.

Without --nats, segd embeds a NATS server with JetStream, keeps its store
under --data-dir and listens on --listen so that natscli and other processes
can connect. With --nats it uses that server, which must have JetStream.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			// Shutdown must not depend on stdout and stderr being
			// writable: with `segd serve | tee log`, Ctrl-C ends tee too,
			// and Go kills a process that writes to a closed stdout or
			// stderr unless SIGPIPE is ignored (the write then fails with
			// EPIPE, which is ignored). Only serve does this: client
			// commands end quietly on a closed pipe, as `| head` expects.
			signal.Ignore(syscall.SIGPIPE)
			// The log goes through a queue, so that a reader that stopped
			// reading blocks neither ingest nor shutdown (logsink.go).
			sink := newLogSink(os.Stderr)
			defer sink.Flush(2 * time.Second)
			logger, err := host.NewLogger(sink, logFormat, level)
			if err != nil {
				return fmt.Errorf("--log-format: %w", err)
			}
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return fmt.Errorf("--tz %q: %w", tz, err)
			}
			cfg.Location, cfg.Logger, cfg.Version = loc, logger, version
			if cfg.NATSURL, cfg.NATSOptions, err = conn.Resolve(os.Getenv); err != nil {
				return err
			}
			if cfg.NATSURL == "" && connFlagsSet(cmd) {
				return errors.New("NATS credentials and TLS flags (--user, --creds, --tlsca...) are for connecting to --nats URL; the embedded server takes --auth FILE (docs/security.md)")
			}
			if err := embeddedSecurity(&cfg, auth.file, auth.cert, auth.key, auth.clientCA); err != nil {
				return err
			}
			if err := bus.CheckMaxAttempts(cfg.MaxAttempts); err != nil {
				return fmt.Errorf("--max-attempts: %w", err)
			}
			if schema != "" {
				if cfg.Schema, err = host.LoadSchema(schema); err != nil {
					return err
				}
			}

			// A closed terminal (SIGHUP) stops segd as Ctrl-C does, with a
			// snapshot; unless SIGHUP is ignored (nohup), which Notify
			// would undo.
			stopOn := []os.Signal{os.Interrupt, syscall.SIGTERM}
			if !signal.Ignored(syscall.SIGHUP) {
				stopOn = append(stopOn, syscall.SIGHUP)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), stopOn...)
			defer stop()
			if cfg.HostID == "" && cfg.NATSURL != "" {
				cfg.HostID = defaultHostID()
			}
			switch {
			case cfg.HostID != "" && cfg.Partitions > 1:
				logger.Info("joining the hosts that share the partitions; this host runs its share and answers for all", "host", cfg.HostID, "partitions", cfg.Partitions)
			case cfg.HostID != "":
				logger.Info("joining the stream's owners; standing by until this host holds the lease", "host", cfg.HostID)
			}
			for {
				srv, err := start(ctx, cfg)
				if err != nil {
					if ctx.Err() != nil && cfg.HostID != "" {
						logger.Info("segd stopped while standing by", "host", cfg.HostID)
						return nil
					}
					return err
				}
				if demo {
					go runDemo(ctx, srv, logger, demoUsers, demoDays, loc)
					demo = false // once, not again after a hand-over
				}
				sink.Flush(time.Second) // the start-up log before the welcome
				printWelcome(cmd, srv, cfg)
				select {
				case <-ctx.Done():
					// Stop consuming, finish the batch in hand, snapshot, exit 0.
					logger.Info("segd is stopping")
					return srv.Close()
				case <-srv.Lost():
					// Another host owns the stream now: this one stopped
					// writing when its lease ended; stand by again.
					logger.Warn("standing by again", "reason", srv.LostErr())
					_ = srv.Close()
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "segd-data", "directory for segd's state and the embedded JetStream store")
	f.StringVar(&conn.URL, "nats", "", "use this NATS server (with JetStream) instead of embedding one, e.g. nats://127.0.0.1:4222 (env "+natsconn.EnvURL+", or a --context's url)")
	natsconn.AddFlags(f, &conn)
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:4222", "client address of the embedded NATS server")
	f.BoolVar(&cfg.NoListen, "no-listen", false, "embedded NATS without a network listener (in-process only)")
	f.StringVar(&auth.file, "auth", "", "users of the embedded NATS server, with roles (segd auth init FILE writes one; docs/security.md)")
	f.StringVar(&auth.cert, "tls-cert", "", "certificate of the embedded NATS listener: clients must use TLS")
	f.StringVar(&auth.key, "tls-key", "", "private key of --tls-cert")
	f.StringVar(&auth.clientCA, "tls-client-ca", "", "CA that signs client certificates: clients must present one (mutual TLS)")
	f.BoolVar(&cfg.Insecure, "insecure", false, "let the embedded NATS server listen on a non-loopback address without --auth")
	f.BoolVar(&cfg.SyncAlways, "sync-always", false, "fsync every JetStream write (survives power loss; slower)")
	f.StringSliceVar(&cfg.RulePaths, "rules", []string{"examples/rules"}, "rule files or directories of *.yaml")
	f.DurationVar(&cfg.Retention, "retention", 90*24*time.Hour, "how long the events stream keeps batches, in whole days (a multiple of 24h); caps rule windows")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", 5*time.Minute, "how often to snapshot the state under --data-dir/snapshots while events arrive (negative: only at shutdown)")
	f.IntVar(&cfg.SnapshotKeep, "snapshot-keep", 3, "how many snapshot files to keep")
	f.IntVar(&cfg.Partitions, "partitions", 1, "split the users into this many partitions (1 to 256), each with its own writer: one per core to use (fixed for an events stream; docs/operations.md, \"Partitions\")")
	f.StringVar(&cfg.HostID, "host-id", "", "this host's name among several segd on one NATS (with --nats, default HOSTNAME-PID): one owns the stream, the others stand by (docs/operations.md, \"Running a standby\")")
	f.DurationVar(&cfg.Lease, "lease", 10*time.Second, "with --host-id: how long the stream's lease lasts unrenewed, whole seconds; a dead owner is taken over after about this plus 1s")
	f.IntVar(&cfg.Replicas, "replicas", 1, "with --nats: copies JetStream keeps of each stream and bucket segd creates or updates (1 to 5; 3 on a 3-node cluster survives losing a node)")
	f.BoolVar(&cfg.NoSnapshots, "no-snapshots", false, "never snapshot: every start replays the whole event log")
	f.Int64Var(&cfg.SnapshotMemoryLimit, "snapshot-memory-limit", 0, "skip a snapshot estimated to need more bytes than this (twice the last one's size; 0: the memory the system has available)")
	f.DurationVar(&cfg.ShutdownSnapshotTimeout, "shutdown-snapshot-timeout", 5*time.Second, "give up the snapshot at shutdown past this (the next start replays the log after the previous snapshot); negative: none")
	f.StringVar(&cfg.PluginsDir, "plugins", "", "directory of WASM plugins (NAME.wasm and NAME.yaml) that rules may name")
	f.BoolVar(&cfg.PluginWazeroInterrupts, "plugin-wazero-interrupts", false, "enforce plugin deadlines with wazero's slower interrupts instead of rewriting modules (an escape hatch; see docs/plugins.md)")
	f.StringVar(&schema, "schema", "", "event schema file: rules are checked against the events it declares")
	f.IntVar(&cfg.MaxAttempts, "max-attempts", bus.DefaultMaxAttempts, "tries of a message whose apply fails (with back-off up to 10s) before it goes to the dead letters, 1 to 100 (10: about 45s)")
	f.DurationVar(&cfg.MaxFutureSkew, "max-skew", 5*time.Minute, "reject events further ahead of segd's clock than this (producer clock drift)")
	f.StringVar(&tz, "tz", "UTC", "IANA time zone of calendar days, e.g. Asia/Shanghai")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", host.LogFormatLogfmt, "logfmt, or json (one JSON object a line, for log shippers)")
	f.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 (docs/operations.md)")
	f.BoolVar(&demo, "demo", false, "also publish a synthetic e-commerce stream (weeks of history, then live events)")
	f.IntVar(&demoUsers, "demo-users", 3000, "users in the demo stream")
	f.IntVar(&demoDays, "demo-days", 28, "days of history in the demo stream")
	return cmd
}

func printWelcome(cmd *cobra.Command, srv *host.Server, cfg host.Config) {
	w := cmd.OutOrStdout()
	url := srv.ClientURL()
	fmt.Fprintf(w, "\nsegd %s is up: %d segments from %s, data in %s\n", version,
		len(srv.Engine().Segments()), strings.Join(cfg.RulePaths, ", "), srv.DataDir())
	if addr := srv.MetricsAddr(); addr != "" {
		fmt.Fprintf(w, "Metrics: http://%s/metrics\n", addr)
	}
	if url == "" {
		fmt.Fprintln(w, "NATS: embedded, in-process only (--no-listen)")
		fmt.Fprintln(w, "\nCtrl-C stops segd.")
		return
	}
	// natscli and segd both default to nats://127.0.0.1:4222.
	natsFlag, segdFlag := "", ""
	if url != "nats://127.0.0.1:4222" {
		natsFlag, segdFlag = " --server "+url, " --nats "+url
	}
	self := os.Args[0]
	if len(cfg.Users) > 0 {
		fmt.Fprintf(w, "NATS: %s, for the %d users of --auth (docs/security.md)\n\nTry, from another terminal, as a reader:\n", url, len(cfg.Users))
		fmt.Fprintf(w, "  %s segment ls --nats %s --user USER --password PASSWORD\n\nCtrl-C stops segd.\n", self, url)
		return
	}
	fmt.Fprintf(w, "NATS: %s\n\nTry, from another terminal:\n", url)
	fmt.Fprintf(w, "  %s segment ls%s\n", self, segdFlag)
	fmt.Fprintf(w, "  %s member segments %s%s\n", self, shop.UserID(1), segdFlag)
	fmt.Fprintf(w, "  nats%s req segd.v1.member.check '{\"user\":\"%s\",\"segment\":\"vip\"}'\n", natsFlag, shop.UserID(1))
	fmt.Fprintf(w, "  nats%s micro info segd\n", natsFlag)
	fmt.Fprintln(w, "\nCtrl-C stops segd.")
}

// runDemo publishes the demo shop's history, then live events, until ctx
// ends.
func runDemo(ctx context.Context, srv *host.Server, logger *slog.Logger, users, days int, loc *time.Location) {
	start := time.Now()
	applied := func(seq uint64) {
		if err := srv.WaitApplied(ctx, seq); err == nil {
			logger.Info("demo: history applied: segments now include it", "days", days, "seq", seq,
				"took", time.Since(start).Round(time.Millisecond))
		}
	}
	n, err := publishDemo(ctx, srv.JetStream(), demoOptions{users: users, days: days, seed: 1, loc: loc, live: true, logger: logger,
		historyPublished: applied})
	if err != nil && ctx.Err() == nil {
		logger.Error("demo producer stopped", "published", n, "error", err)
	}
}

// defaultHostID is HOSTNAME-PID, reduced to the characters a host id
// may hold.
func defaultHostID() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "segd"
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	return name + "-" + strconv.Itoa(os.Getpid())
}
