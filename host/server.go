package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/datadir"
	"github.com/segd/segd/host/metrics"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/plugins"
	"github.com/segd/segd/rules"
)

// MaxReplicas is the most copies JetStream keeps of a stream
// (Config.Replicas).
const MaxReplicas = 5

// Config configures a segd server. The zero value, with RulePaths set, runs
// an embedded NATS server on 127.0.0.1:4222 with state under ./segd-data.
type Config struct {
	// DataDir holds segd's state: the embedded JetStream store and, later,
	// snapshots (default ./segd-data). A Server locks it (DataDir/segd.lock)
	// from Start to Close: a second Start on it fails, naming the holder.
	DataDir string
	// NATSURL connects to an existing NATS server with JetStream instead of
	// embedding one.
	NATSURL string
	// NATSOptions are added to segd's own connection to NATSURL:
	// credentials, TLS, an inbox prefix (package bus/natsconn builds them
	// from flags; docs/security.md says what segd's identity may do).
	NATSOptions []nats.Option
	// Listen is the embedded server's client address (default
	// 127.0.0.1:4222); NoListen turns the listener off, leaving only
	// in-process connections.
	Listen   string
	NoListen bool
	// Users, when set, makes the embedded server require authentication:
	// each user has its role's permissions (docs/security.md, bus.User).
	Users []bus.User
	// TLS serves the embedded listener over TLS; TLSVerify also requires
	// client certificates (mutual TLS).
	TLS       *tls.Config
	TLSVerify bool
	// Insecure lets the embedded server listen on a non-loopback address
	// without Users, which Start otherwise refuses.
	Insecure bool
	// SyncAlways makes the embedded JetStream fsync every write.
	SyncAlways bool
	// RulePaths are rule files or directories of them.
	RulePaths []string
	// PluginsDir holds WASM plugins (NAME.wasm with an optional NAME.yaml
	// manifest) that rules may name; empty loads none.
	PluginsDir string
	// PluginWazeroInterrupts enforces plugin deadlines with wazero's own
	// (slower) interrupts instead of rewriting modules; see
	// plugins.Options.WazeroInterrupts.
	PluginWazeroInterrupts bool
	// Schema, if set, checks rules against the events producers declare.
	Schema *rules.Schema
	// Location is the time zone of calendar days (default UTC).
	Location *time.Location
	// Clock drives windows (default the system clock).
	Clock engine.Clock
	// Retention is how long the events stream keeps batches (default 90
	// days); it also caps rule windows. It must be a whole number of days
	// (a multiple of 24h, at least 24h): rule windows, the engine and the
	// analysis index keep Retention/24h calendar days, today included.
	Retention time.Duration
	// MaxFutureSkew rejects events further ahead of the clock (default
	// engine.DefaultMaxFutureSkew, 5 minutes).
	MaxFutureSkew time.Duration
	// SnapshotInterval is how often segd snapshots its state under
	// DataDir/snapshots while events arrive (default 5 minutes; negative:
	// only on Close). A restart loads the newest good snapshot and replays
	// the log after it.
	SnapshotInterval time.Duration
	// SnapshotKeep is how many snapshot files are kept (default 3).
	SnapshotKeep int
	// NoSnapshots turns snapshots off: every start replays the whole log.
	NoSnapshots bool
	// SnapshotMemoryLimit is the most memory a snapshot may need, estimated
	// as twice the size of the last one (the encoded file and what the
	// writer copies meanwhile); a snapshot past it is skipped, counted in
	// status (snapshot.skipped) and tried again at the next interval. 0:
	// the memory the system has available (MemAvailable), so that a
	// snapshot never runs the machine out of memory.
	SnapshotMemoryLimit int64
	// ShutdownSnapshotTimeout bounds the snapshot written on Close
	// (default 5s): past it the snapshot is abandoned and the next start
	// loads the previous one and replays the log after it. Negative: no
	// snapshot on Close. None is written either when nothing was applied
	// since the last snapshot (written or loaded).
	ShutdownSnapshotTimeout time.Duration
	// FeedBacklog bounds the bytes of changes waiting to be stored in
	// SEGD_CHANGES (default bus.DefaultFeedBacklog, 16 MiB); past it ingest
	// waits for the feed.
	FeedBacklog int
	// Metrics, if set, is the HOST:PORT where segd serves Prometheus
	// metrics at /metrics (port 0 picks a free one: see MetricsAddr).
	Metrics string
	// Version is reported by the micro service.
	Version string
	// Logger receives segd's log (nil: slog.Default()).
	Logger *slog.Logger
	// Partitions splits the users into this many partitions (default 1,
	// at most api.MaxPartitions), each with its own engine (one writer),
	// analysis index, consumer, snapshots under DataDir/p<N>of<P>/ and
	// change feed publisher; answers are merged across them. It is fixed
	// for an events stream (recorded in it at the first start): see
	// docs/operations.md, "Partitions".
	Partitions int
	// HostID, when set, makes this segd one of several hosts on one NATS
	// (ownership.go): it holds the stream only while it holds a lease in
	// KV SEGD_OWNERS, and stands by (Start waits) until then. 1-64 of
	// A-Z a-z 0-9 _ -, unique among the live hosts.
	HostID string
	// Lease is how long the stream's lease lasts without renewal (whole
	// seconds; default 10s): a host that dies is taken over within about
	// Lease + 1s (docs/operations.md, "Running a standby").
	Lease time.Duration
	// Replicas is the number of copies JetStream keeps of every stream and
	// bucket segd creates or updates (SEGD_EVENTS, SEGD_CHANGES, the dead
	// letters, SEGD_RULES, SEGD_PLUGINS, SEGD_OWNERS, SEGD_SNAPSHOTS):
	// default 1, at most MaxReplicas; 3 on a 3-node cluster survives the
	// loss of a node.
	Replicas int

	// MaxAttempts is how many times the consumer tries a message whose
	// apply fails before it goes to the dead letters (0:
	// bus.DefaultMaxAttempts; at most bus.MaxMaxAttempts).
	MaxAttempts int

	// ruleRebuildGate, in tests, holds the log reads of rule changes'
	// rebuilds until it is closed (rules_admin.go).
	ruleRebuildGate chan struct{}
	// ruleRebuildHold, in tests, returns for a partition's rebuild of a
	// rule change a channel its log reads wait on until it is closed (nil:
	// none), so that a change can swap in some partitions only.
	ruleRebuildHold func(partition int, segment string, revision uint64) <-chan struct{}
}

// Server is a running segd.
type Server struct {
	cfg      Config
	lock     *datadir.Lock // DataDir's, held from the start of Start to the end of Close
	embedded *bus.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream
	engine   *engine.Engine
	plugins  *plugins.Registry
	analysis *analysis.Index
	// predicates are the named event predicates of the rule files, which
	// the analysis index records as events named "@ID".
	predicates []*rules.NamedPredicate
	// ruleFiles and ruleOpts are the rules as loaded, which a segment
	// preview is compiled beside (preview.go); previewSlot lets one run.
	ruleFiles   []rules.File
	ruleOpts    rules.Options
	previewSlot chan struct{}
	consumer    *bus.Consumer
	service     *bus.Service
	segAPI      *segmentAPI // the change feed and upload waiter (changes.go)
	snaps       *snapshots
	dlq         *bus.DeadLetters
	replayFrom  uint64
	// rebuild is the rebuild from the log of the segments the loaded
	// snapshot held no state for (new or changed rules); rebuildDone is
	// closed when it ended.
	rebuild     *engine.Rebuild
	rebuildDone chan struct{}
	rebuildErr  error
	started     bool
	cancel      context.CancelFunc
	engineDone  chan struct{}
	closeOnce   sync.Once
	closeErr    error

	// rebuildEnded is set when the rebuild at start ended (readiness
	// waits for it, not for later rebuilds: ready.go).
	rebuildEnded atomic.Bool

	// recovery rebuilds stale segments (plugin_recovery.go).
	recovery *pluginRecovery

	// metrics and metricsSrv are the Prometheus registry and its HTTP
	// server (metrics.go).
	metrics    *metrics.Metrics
	metricsSrv *metrics.Server
	// rules is the rules admin API and its applier (rules_admin.go).
	rules *ruleAdmin
	// pluginAdmin is the plugins admin API (plugin_admin.go).
	pluginAdmin *pluginAdmin

	// With Config.Partitions > 1 this Server is the front (partition.go):
	// it holds the connection, the service, the admin APIs and the
	// metrics, and parts are its partitions, each a Server of its own
	// engine, index, consumer, snapshots and feed, whose front is this
	// one. With one partition, the Server is its own partition (parts is
	// nil).
	parts []*Server
	front *Server
	part  partInfo
	// runCtx is what a partition's consumer and loops run under, until
	// Close.
	runCtx context.Context
	// feedLock serializes the partitions' change feed publishes (see
	// bus.ChangeFeedOptions.PublishLock).
	feedLock bus.FeedLock
	// scatter merges the partitions' answers; the front serves it.
	scatter *scatter.Scatter
	// own is the stream's lease and the Object Store of snapshots, with
	// Config.HostID (ownership.go): on the front of a standby; with
	// several active hosts, each partition's own lease.
	own *ownership
	// multi is this host's share of the partitions, with Config.HostID
	// and Config.Partitions > 1 (multihost.go); on the front only.
	multi *multiHost
}

// startEngines pulls each partition's snapshot and starts its engine,
// startsAtOnce side by side (with P > 1 on one host, loading P snapshots
// one after another would add up). It returns the events stream's last
// sequence at start, and the first partition's error.
func (s *Server) startEngines(ctx context.Context, stream jetstream.Stream, segments []*rules.Segment, revisions map[string]uint64) (uint64, error) {
	parts := s.partitions()
	seqs := make([]uint64, len(parts))
	errs := make([]error, len(parts))
	slots := make(chan struct{}, startsAtOnce)
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if err := s.pullSnapshot(ctx, p); err != nil {
				errs[i] = partErr(p, err)
				return
			}
			var err error
			if seqs[i], err = p.startEngine(ctx, stream, segments, revisions); err != nil {
				errs[i] = partErr(p, err)
			}
		})
	}
	wg.Wait()
	var last uint64
	for i, err := range errs {
		if err != nil {
			return 0, err
		}
		last = max(last, seqs[i])
	}
	return last, nil
}

// Start loads the rules, starts or connects to NATS, creates the events
// stream, starts the engine, replays the retained events, and serves
// membership. The returned Server runs until Close.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "segd-data"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Retention == 0 {
		cfg.Retention = 90 * day
	}
	if err := checkRetention(cfg.Retention); err != nil {
		return nil, err
	}
	if cfg.MaxAttempts != 0 {
		if err := bus.CheckMaxAttempts(cfg.MaxAttempts); err != nil {
			return nil, fmt.Errorf("%w (--max-attempts)", err)
		}
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = 5 * time.Minute
	}
	if cfg.SnapshotKeep <= 0 {
		cfg.SnapshotKeep = 3
	}
	if cfg.ShutdownSnapshotTimeout == 0 {
		cfg.ShutdownSnapshotTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, engineDone: make(chan struct{}), previewSlot: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Two segds on one data dir would share the JetStream store and write
	// snapshots over each other: the lock comes before anything reads or
	// writes there.
	if s.lock, err = datadir.Acquire(cfg.DataDir, datadir.Self(time.Now())); err != nil {
		return nil, err
	}
	ruleOpts := rules.Options{MaxWindowDays: s.retentionDays(), Schema: cfg.Schema}
	if cfg.PluginsDir != "" {
		if s.plugins, err = LoadPlugins(ctx, cfg.PluginsDir, cfg.DataDir, cfg.Logger, cfg.PluginWazeroInterrupts); err != nil {
			return nil, err
		}
		ruleOpts.Plugins = s.plugins
	}
	if s.ruleFiles, err = ReadRuleFiles(cfg.RulePaths...); err != nil {
		return nil, err
	}
	s.ruleOpts = ruleOpts
	if err := s.connect(); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg.Replicas < 0 || cfg.Replicas > MaxReplicas {
		return nil, fmt.Errorf("--replicas %d: want 1 to %d (JetStream's limit)", cfg.Replicas, MaxReplicas)
	}
	if cfg.HostID != "" && cfg.Partitions <= 1 {
		// A standby waits here, before it reads rules, plugins or state.
		// (With more partitions, hosts share them: joinMulti, below.)
		if err := s.joinOwnership(ctx); err != nil {
			return nil, err
		}
	}
	// The plugins bucket's modules above --plugins DIR's, before the
	// rules that name them compile.
	if err := s.loadPluginStore(ctx); err != nil {
		return nil, err
	}
	// The rule files, with the rules admin API's definitions above them.
	ruleSet, revisions, err := s.loadRules(ctx)
	if err != nil {
		return nil, err
	}
	segments := ruleSet.Segments
	s.predicates = ruleSet.Predicates
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
		s.cfg.Partitions = 1
	}
	if err := bus.CheckPartitions(cfg.Partitions); err != nil {
		return nil, fmt.Errorf("%w (--partitions)", err)
	}
	s.part = partInfo{n: 0, of: 1}
	stream, err := ensureRetry(ctx, cfg.Logger, bus.EventsStream, func(ctx context.Context) (jetstream.Stream, error) {
		return bus.EnsureEventsStream(ctx, s.js, bus.StreamConfig{MaxAge: cfg.Retention, Partitions: cfg.Partitions, Replicas: cfg.Replicas})
	})
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	if cfg.Partitions > 1 && cfg.HostID == "" {
		for n := range cfg.Partitions {
			p := s.newPartition(n)
			s.parts = append(s.parts, p)
			if err := s.dial(p); err != nil {
				return nil, err
			}
		}
	}
	lastSeq, err := s.startEngines(ctx, stream, segments, revisions)
	if err != nil {
		return nil, err
	}
	if s.multiMode() {
		if err := s.startMulti(ctx, stream, segments, revisions); err != nil {
			return nil, err
		}
	}
	if s.isFront() {
		runCtx, cancel := context.WithCancel(context.Background())
		s.runCtx, s.cancel = runCtx, cancel
		close(s.engineDone) // the front runs no engine
		if s.multi == nil {
			if err := s.startScatter(); err != nil {
				return nil, err
			}
		}
	}

	if s.dlq, err = ensureRetry(ctx, cfg.Logger, "dead letters", func(ctx context.Context) (*bus.DeadLetters, error) {
		return bus.EnsureDeadLetters(ctx, s.js, bus.DeadLetterConfig{MaxAge: cfg.Retention, Replicas: cfg.Replicas})
	}); err != nil {
		return nil, err
	}
	if err := s.startMetrics(); err != nil {
		return nil, err
	}
	if s.own != nil {
		if err := s.dropStaleDurables(ctx); err != nil {
			return nil, err
		}
	}
	for _, p := range s.partitions() {
		p.dlq, p.metrics = s.dlq, s.metrics
		if err := p.startConsumer(); err != nil {
			return nil, partErr(p, err)
		}
	}
	s.service, err = bus.StartService(s.nc, s.membership(), bus.ServiceOptions{Version: cfg.Version, OnRequest: s.metrics.ObserveRequest,
		Endpoints: append(append(append(s.segmentEndpoints(), s.analysisEndpoints()...), bus.PreviewEndpoint(s.preview, previewTimeout), bus.UserGetEndpoint(s.userGet)), append(bus.RuleEndpoints(s.rules), bus.PluginEndpoints(s.pluginAdmin)...)...)})
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	cfg.Logger.Info("segd is serving", "segments", len(segments), "nats", s.ClientURL(), "data", cfg.DataDir,
		"partitions", cfg.Partitions, "replaying_from_seq", s.replayFromAll(), "replaying_to_seq", lastSeq)
	for _, p := range s.partitions() {
		p.startLoops()
	}
	if s.isFront() {
		s.startPluginRecoveryFanOut()
	}
	s.startRuleAdmin(s.runCtx)
	s.startPluginWatch(s.runCtx)
	s.started = true
	if s.multi != nil {
		// Last: partitions gained from here on start beside a running
		// service and admin APIs.
		if err := s.joinMulti(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// runRebuild replays the retained log, from its first sequence to the
// snapshot's, into the segments being rebuilt; live batches applied
// meanwhile are kept by the engine and fed last (see engine.Rebuild).
func (s *Server) runRebuild(ctx context.Context, rb *engine.Rebuild) {
	defer close(s.rebuildDone)
	defer s.rebuildEnded.Store(true)
	start := time.Now()
	err := func() error {
		src, err := s.readLog(ctx, 1, rb.ToSeq())
		if err != nil {
			return err
		}
		defer src.Close()
		res, err := rb.Run(ctx, src)
		if err == nil {
			s.cfg.Logger.Info("segments rebuilt from the event log; serving them", "segments", res.Segments,
				"to_seq", res.ToSeq, "messages", res.Messages, "live_messages", res.Live,
				"skipped_events", res.SkippedEvents, "took", time.Since(start).Round(time.Millisecond))
		}
		return err
	}()
	if err != nil && ctx.Err() == nil {
		s.rebuildErr = err
		s.cfg.Logger.Error("rebuild from the log failed; the segments are stale and rebuilt again after a back-off",
			"segments", rb.Segments(), "error", err)
		s.abortRebuild(ctx, rb, err)
	}
}

// WaitRebuilt waits until the segments rebuilt at start (new or changed
// rules) are served, and returns the rebuild's error if it failed. It
// returns at once when there is nothing to rebuild.
func (s *Server) WaitRebuilt(ctx context.Context) error {
	if s.isFront() {
		var errs []error
		for _, p := range s.partitions() {
			errs = append(errs, p.WaitRebuilt(ctx))
		}
		return errors.Join(errs...)
	}
	if s.rebuildDone == nil {
		return nil
	}
	select {
	case <-s.rebuildDone:
		return s.rebuildErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connect embeds a NATS server or connects to the configured one.
func (s *Server) connect() error {
	if s.cfg.NATSURL != "" {
		opts := append([]nats.Option{nats.Name("segd"), nats.MaxReconnects(-1),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				s.cfg.Logger.Error("NATS reported an error on segd's connection", "error", err)
			})}, s.cfg.NATSOptions...)
		nc, err := nats.Connect(s.cfg.NATSURL, opts...)
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return fmt.Errorf("connect to NATS at %s: %w (check segd's credentials: docs/security.md)", s.cfg.NATSURL, err)
		}
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w (is the server running, with JetStream enabled?)", s.cfg.NATSURL, err)
		}
		s.nc = nc
		return nil
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	opts := bus.EmbeddedOptions{
		DataDir:    s.cfg.DataDir,
		NoListen:   s.cfg.NoListen,
		SyncAlways: s.cfg.SyncAlways,
		Logger:     natsLogger(s.cfg.Logger),
		Users:      s.cfg.Users,
		TLS:        s.cfg.TLS,
		TLSVerify:  s.cfg.TLSVerify,
		Insecure:   s.cfg.Insecure,
	}
	if !s.cfg.NoListen {
		listen := s.cfg.Listen
		if listen == "" {
			listen = "127.0.0.1:4222"
		}
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return fmt.Errorf("listen address %q: want HOST:PORT, e.g. 127.0.0.1:4222", listen)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("listen address %q: the port is not a number", listen)
		}
		if opts.Port == 0 {
			opts.Port = -1 // any free port
		}
		opts.Host = host
	}
	var err error
	if s.embedded, err = bus.StartEmbedded(opts); err != nil {
		return err
	}
	s.nc, err = s.embedded.Connect()
	return err
}

// ClientURL is where NATS clients reach the server segd uses; empty for an
// embedded server without a listener.
func (s *Server) ClientURL() string {
	if s.cfg.NATSURL != "" {
		return s.cfg.NATSURL
	}
	if s.cfg.NoListen || s.embedded == nil {
		return ""
	}
	return s.embedded.ClientURL()
}

// Conn returns segd's own NATS connection, e.g. for an in-process producer.
func (s *Server) Conn() *nats.Conn { return s.nc }

// JetStream returns a JetStream context on Conn.
func (s *Server) JetStream() jetstream.JetStream { return s.js }

// Engine returns the running engine: with several partitions, the first
// partition's (see Partition); with several hosts and none running here,
// an engine of the definitions alone.
func (s *Server) Engine() *engine.Engine { return s.defEngine() }

// Partitions returns the number of partitions.
func (s *Server) Partitions() int {
	if s.multi != nil {
		return s.cfg.Partitions
	}
	return len(s.partitions())
}

// Partition returns partition n's engine and analysis index; nil when
// partition n runs on another host.
func (s *Server) Partition(n int) (*engine.Engine, *analysis.Index) {
	for _, p := range s.partitions() {
		if p.part.n == n {
			return p.engine, p.analysis
		}
	}
	return nil, nil
}

// DataDir returns the data directory in use.
func (s *Server) DataDir() string { return filepath.Clean(s.cfg.DataDir) }

// Close stops consuming (finishing the batch in hand), stops the service and
// the engine, and shuts the embedded server down. It is safe on a partly
// started Server.
//
// A started Server writes a last snapshot after the consumer stopped, so
// that the next start replays nothing. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	var errs []error
	if s.multi != nil {
		s.closeMulti() // multihost.go: hands each partition over
	}
	parts := s.partitions()
	for _, p := range parts {
		p.closingChanges()
	}
	for _, p := range parts {
		if p.consumer != nil {
			p.consumer.Stop()
		}
	}
	if s.service != nil {
		errs = append(errs, s.service.Stop())
	}
	if s.metricsSrv != nil {
		errs = append(errs, s.metricsSrv.Close())
	}
	// The partitions' shutdown snapshots are written at once, each within
	// ShutdownSnapshotTimeout, so that a stop takes that long, not P times.
	shutdownErrs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		if p.started && p.snaps != nil && !s.isFenced() {
			wg.Go(func() {
				p.stopSnapshots()
				shutdownErrs[i] = p.shutdownSnapshot()
			})
		}
	}
	wg.Wait()
	errs = append(errs, shutdownErrs...)
	if s.isFront() && s.cancel != nil {
		s.cancel() // the front's rule admin and plugin watch
	}
	for _, p := range parts {
		if p.cancel != nil {
			p.cancel()
			<-p.engineDone
		}
	}
	for _, p := range parts {
		if p.rebuildDone != nil {
			<-p.rebuildDone
		}
		p.stopPluginRecovery()
	}
	s.stopRuleAdmin()
	// The partitions' feeds stop together: they share a publish lock, so
	// one closed alone could wait for another's publish in flight, whose
	// stop has not come yet, up to its acknowledgement timeout (30 s).
	var feeds sync.WaitGroup
	for _, p := range parts {
		feeds.Go(func() {
			p.closeChanges()
			if p != s && p.nc != nil {
				p.nc.Close() // a partition's own connection
			}
		})
	}
	feeds.Wait()
	s.leaveOwnership() // after the last snapshot
	if s.nc != nil {
		s.nc.Close()
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
	}
	if s.plugins != nil {
		errs = append(errs, s.plugins.Close(context.Background()))
	}
	// Last: everything that writes to the data dir has stopped.
	errs = append(errs, s.lock.Release())
	return errors.Join(errs...)
}
