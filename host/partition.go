package host

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// Partitions (docs/operations.md, "Partitions"): with Config.Partitions
// P > 1, users are split by ingest.Partition into P partitions. Each is a
// Server of its own (engine with one writer goroutine, dictionary, rule
// state, analysis index, snapshots, consumer, change feed publisher) that
// shares the front's NATS connection, plugins and rules; the front serves
// the merged answers and the admin APIs, and fans rule and plugin
// changes out to every partition. With P = 1 the Server is its own only
// partition and runs as it always did (durable "segd", DataDir/snapshots).

// partInfo is a partition's number n of of.
type partInfo struct{ n, of int }

// name is the partition's name, p<N>of<P>.
func (p partInfo) name() string { return bus.PartitionName(p.n, p.of) }

// partitions returns the Servers that run an engine: the partitions of a
// front, or the Server itself.
func (s *Server) partitions() []*Server {
	if s.parts != nil {
		return s.parts
	}
	return []*Server{s}
}

// partOf returns the partition that holds user.
func (s *Server) partOf(user string) *Server {
	if s.parts == nil {
		return s
	}
	return s.parts[ingest.Partition(user, len(s.parts))]
}

// defEngine is an engine to read segment definitions from: every
// partition runs the same ones.
func (s *Server) defEngine() *engine.Engine { return s.partitions()[0].engine }

// partErr names the partition an error of a front's start came from.
func partErr(p *Server, err error) error {
	if p.part.of < 2 {
		return err
	}
	return fmt.Errorf("partition %s: %w", p.part.name(), err)
}

// newPartition makes partition n of the front s, sharing what the front
// loaded and connected.
func (s *Server) newPartition(n int) *Server {
	p := &Server{cfg: s.cfg, front: s, part: partInfo{n: n, of: s.cfg.Partitions}, engineDone: make(chan struct{}),
		previewSlot: s.previewSlot, nc: s.nc, js: s.js, plugins: s.plugins, predicates: s.predicates,
		ruleFiles: s.ruleFiles, ruleOpts: s.ruleOpts}
	p.cfg.Logger = s.cfg.Logger.With("partition", p.part.name())
	return p
}

// snapshotDir is where the partition's snapshots are: DataDir/snapshots,
// or DataDir/p<N>of<P>/snapshots with several partitions.
func (s *Server) snapshotDir() string {
	if s.part.of > 1 {
		return filepath.Join(s.cfg.DataDir, s.part.name(), "snapshots")
	}
	return filepath.Join(s.cfg.DataDir, "snapshots")
}

// startEngine builds the partition's engine and analysis index, loads its
// newest good snapshot, and runs the engine. It returns the events
// stream's last sequence at start.
func (s *Server) startEngine(ctx context.Context, stream jetstream.Stream, segments []*rules.Segment, revisions map[string]uint64) (uint64, error) {
	cfg := s.cfg
	engineCfg := engine.Config{Segments: segments, Location: cfg.Location, Clock: cfg.Clock, Logger: cfg.Logger,
		RetentionDays: s.retentionDays(), FingerprintExtra: s.pluginVersions, MaxFutureSkew: cfg.MaxFutureSkew,
		Revisions: revisions}
	if err := s.wireChanges(ctx, &engineCfg); err != nil {
		return 0, err
	}
	newEngine := func() {
		s.wireAnalysis(&engineCfg)
		s.engine = engine.New(engineCfg)
	}
	newEngine()

	// State is the newest good snapshot plus the log after it; without
	// one, the whole log the stream still holds.
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	s.replayFrom = max(1, info.State.FirstSeq)
	if !cfg.NoSnapshots {
		s.snaps = &snapshots{dir: s.snapshotDir(), keep: cfg.SnapshotKeep, stream: info.Created}
		s.snaps.status.IntervalMs = cfg.SnapshotInterval.Milliseconds()
		s.snaps.removeTemps()
		if res := s.restore(info, newEngine); res != nil {
			s.replayFrom = res.meta.Seq + 1
			s.snaps.status.Loaded, s.snaps.status.LoadedSeq = res.path, res.meta.Seq
			cfg.Logger.Info("snapshot loaded", "file", res.path, "seq", res.meta.Seq,
				"replaying_to_seq", info.State.LastSeq)
			if len(res.stale) > 0 {
				// A rule is new or changed (or reads one that is): the
				// snapshot holds no state for it; or it was stale (a
				// plugin failed a batch). The others are loaded; it is
				// rebuilt from the retained log alone, and not served
				// until then.
				rb, err := s.engine.StartRebuild(res.stale)
				if err != nil {
					return 0, fmt.Errorf("rebuild: %w", err)
				}
				s.rebuild = rb
				s.snaps.status.Rebuilt = rb.Segments()
				cfg.Logger.Warn("rules changed since the snapshot, or were stale in it; rebuilding them from the log", "snapshot", res.path,
					"segments", rb.Segments(), "to_seq", rb.ToSeq())
			}
		}
	}
	if err := s.startPartitionFeed(ctx); err != nil {
		return 0, err
	}
	s.segAPI.waiter.Applied(s.replayFrom - 1)
	runCtx, cancel := context.WithCancel(context.Background())
	s.runCtx, s.cancel = runCtx, cancel
	go func() {
		defer close(s.engineDone)
		_ = s.engine.Run(runCtx)
	}()
	return info.State.LastSeq, nil
}

// startConsumer starts feeding the partition's engine from its durable
// consumer (bus.PartitionDurable), from the sequence after its snapshot.
func (s *Server) startConsumer() error {
	var err error
	s.consumer, err = bus.Consume(s.runCtx, s.js, timedIngester{s.ingester(), s.metrics}, bus.ConsumerOptions{
		StartSeq:       s.replayFrom,
		Logger:         s.cfg.Logger,
		DeadLetters:    s.dlq,
		Durable:        bus.PartitionDurable(s.part.n, s.part.of),
		FilterSubjects: bus.PartitionFilterSubjects(s.part.n, s.part.of),
		Partition:      s.part.n,
		Partitions:     s.part.of,
	})
	return err
}

// startLoops starts the partition's rebuild at start, its replay log, its
// stale segments' recovery and its snapshots.
func (s *Server) startLoops() {
	if s.rebuild != nil {
		s.rebuildDone = make(chan struct{})
		go s.runRebuild(s.runCtx, s.rebuild)
	}
	go s.logReplay(s.runCtx, s.segAPI.replayTo)
	s.startPluginRecovery(s.runCtx)
	if s.snaps != nil {
		s.snaps.stop, s.snaps.done = make(chan struct{}), make(chan struct{})
		if s.cfg.SnapshotInterval > 0 {
			go s.runSnapshots(s.cfg.SnapshotInterval)
		} else {
			close(s.snaps.done)
		}
	}
	s.started = true
}

// replayFromAll is the lowest sequence a partition replays from.
func (s *Server) replayFromAll() uint64 {
	from := s.partitions()[0].replayFrom
	for _, p := range s.partitions() {
		from = min(from, p.replayFrom)
	}
	return from
}

// readLog reads the partition's share of the events log, as a rebuild
// replays it.
func (s *Server) readLog(ctx context.Context, from, to uint64) (*bus.LogReader, error) {
	return bus.ReadPartitionLog(ctx, s.js, bus.EventsStream, from, to, s.part.n, s.part.of)
}

// startPluginRecoveryFanOut hands the plugin registry's news to every
// partition's recovery loop (the registry has one listener).
func (s *Server) startPluginRecoveryFanOut() {
	if s.plugins == nil {
		return
	}
	s.plugins.OnUsable(func(name string, newVersion bool) {
		for _, p := range s.parts {
			if p.recovery != nil {
				p.recovery.usable(name, newVersion)
			}
		}
	})
}
