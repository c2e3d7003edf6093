package host

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/scatter"
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
	if s.multi != nil {
		return s.multi.list() // those running here now
	}
	if s.parts != nil {
		return s.parts
	}
	return []*Server{s}
}

// defEngine is an engine to read segment definitions from: every
// partition runs the same ones.
func (s *Server) defEngine() *engine.Engine {
	if ps := s.partitions(); len(ps) > 0 {
		return ps[0].engine
	}
	return s.multi.defs // none runs here now (multihost.go)
}

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

// dial opens a partition's own NATS connection, with the front's
// options: each partition's consumer then has its own read loop and its
// own outbound buffer in the server (P consumers pulling on one
// connection would overrun its pending limit, and the server would cut
// it as a slow consumer).
func (s *Server) dial(p *Server) error {
	var err error
	if s.embedded != nil {
		p.nc, err = s.embedded.Connect(nats.Name("segd " + p.part.name()))
	} else {
		opts := append([]nats.Option{nats.Name("segd " + p.part.name()), nats.MaxReconnects(-1),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				p.cfg.Logger.Error("NATS reported an error on segd's connection", "error", err)
			})}, s.cfg.NATSOptions...)
		p.nc, err = nats.Connect(s.cfg.NATSURL, opts...)
	}
	if err != nil {
		return fmt.Errorf("partition %s: connect to NATS: %w", p.part.name(), err)
	}
	if p.js, err = jetstream.New(p.nc); err != nil {
		return fmt.Errorf("partition %s: jetstream: %w", p.part.name(), err)
	}
	return nil
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
	if s.part.of > 1 {
		engineCfg.MaxUsers = scatter.MaxUsers(s.part.of)
	}
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
		s.snaps = &snapshots{dir: s.snapshotDir(), keep: cfg.SnapshotKeep, stream: info.Created,
			memLimit: cfg.SnapshotMemoryLimit, memAvailable: memAvailable}
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
	var ing bus.Ingester = timedIngester{s.ingester(), s.metrics}
	if o := s.ownerState(); o != nil {
		ing = fencedIngester{ing, o} // ownership.go
	}
	s.consumer, err = bus.Consume(s.runCtx, s.js, ing, bus.ConsumerOptions{
		StartSeq:       s.replayFrom,
		MaxAttempts:    s.cfg.MaxAttempts,
		Logger:         s.cfg.Logger,
		DeadLetters:    s.dlq,
		Durable:        s.durable(),
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
	var from uint64
	for i, p := range s.partitions() {
		if i == 0 {
			from = p.replayFrom
		}
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
		for _, p := range s.partitions() {
			if p.recovery != nil {
				p.recovery.usable(name, newVersion)
			}
		}
	})
}

// eachEngine runs fn on every partition's engine, on its writer. A
// partition that stops meanwhile (it moved to another host) is left out:
// the next one to run it starts with the definitions current then.
func (s *Server) eachEngine(ctx context.Context, fn func(*engine.Engine)) error {
	for _, p := range s.partitions() {
		e := p.engine
		pctx, cancel := p.boundCtx(ctx)
		err := e.Do(pctx, func() error { fn(e); return nil })
		cancel()
		if err != nil && p.stopped() && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return partErr(p, err)
		}
	}
	return nil
}

// boundCtx is ctx, ended also when partition p stops: its engine then
// takes no more commands, and a Do would wait for ever.
func (s *Server) boundCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	if s.runCtx == nil {
		return c, cancel
	}
	stop := context.AfterFunc(s.runCtx, cancel)
	return c, func() { stop(); cancel() }
}

// stopped reports whether partition s has stopped (or is stopping).
func (s *Server) stopped() bool { return s.runCtx != nil && s.runCtx.Err() != nil }

// segmentState is a segment's definition and its state: with several
// partitions, the merged state (the one furthest from served wins).
func (s *Server) segmentState(segment string) (*rules.Segment, api.SegmentInfo, error) {
	seg, info, err := s.defEngine().Segment(segment)
	if err != nil || s.scatter == nil {
		return seg, info, err
	}
	d, err := s.scatter.SegmentDetail(segment)
	if err != nil {
		return seg, info, err
	}
	return seg, d.SegmentInfo, nil
}

// startScatter builds the merged view of the partitions, which the front
// serves (host/scatter).
func (s *Server) startScatter() error {
	var ids []string
	for _, p := range s.predicates {
		ids = append(ids, p.ID)
	}
	parts := make([]scatter.Part, len(s.parts))
	for i, p := range s.parts {
		parts[i] = sharedCounters{scatter.NewLocal(scatter.LocalConfig{Engine: p.engine, Index: p.analysis, Predicates: ids,
			Replaying: p.rebuilding, Status: p.completeStatus}), i == 0}
	}
	var err error
	s.scatter, err = scatter.New(parts, scatter.Options{})
	return err
}

// WaitApplied waits until every message up to seq that the partitions
// read is applied (segment.upload waits so for its upload). A partition
// that reads no message at seq has applied it once it has applied the
// last it reads up to seq. A JetStream request that fails (a busy server
// times out) is asked again while ctx lasts.
func (s *Server) WaitApplied(ctx context.Context, seq uint64) error {
	if !s.isFront() {
		return s.segAPI.waiter.Wait(ctx, seq)
	}
	if s.multi != nil {
		if err := s.multi.waitAppliedElsewhere(ctx, seq); err != nil {
			return err
		}
	}
	for _, p := range s.partitions() {
		w := &p.segAPI.waiter
		for w.Last() < seq {
			// Its last message up to now, if before seq, is all it waits
			// for: a message of its after seq is applied after seq's.
			last, err := bus.LastPartitionSeq(ctx, p.segAPI.events, p.part.n, p.part.of)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				select { // applied meanwhile, or ask again
				case <-w.Changed():
				case <-time.After(waitAppliedRetry):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			if err := w.Wait(ctx, min(seq, last)); err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// waitAppliedRetry is how long WaitApplied waits before asking JetStream
// again after a failed request.
const waitAppliedRetry = 100 * time.Millisecond

// appliedSeq is the last events sequence applied: with several
// partitions, the highest any applied.
func (s *Server) appliedSeq() uint64 {
	var seq uint64
	if s.multi != nil {
		// Partitions elsewhere too: a preview replays the log as far as
		// any partition, wherever it runs, has applied it.
		for _, ps := range s.scatter.Status().Partitions {
			seq = max(seq, ps.LastSeq)
		}
	}
	for _, p := range s.partitions() {
		seq = max(seq, p.engine.Status().LastSeq)
	}
	return seq
}

// work sums the partitions' engine work counters.
func (s *Server) work() engine.WorkStats {
	if !s.isFront() {
		return s.engine.Work()
	}
	var out engine.WorkStats
	for _, p := range s.partitions() {
		w := p.engine.Work()
		out.ClockMoves += w.ClockMoves
		out.ClockJudged += w.ClockJudged
		out.ClockTime += w.ClockTime
		out.Applied += w.Applied
		out.ApplyTime += w.ApplyTime
		if out.Evaluations == nil {
			out.Evaluations = map[string]uint64{}
		}
		for id, n := range w.Evaluations {
			out.Evaluations[id] += n
		}
	}
	return out
}

// snapshotAll snapshots every partition; it returns their paths, joined
// by commas.
func (s *Server) snapshotAll(ctx context.Context) (string, error) {
	var paths []string
	for _, p := range s.partitions() {
		pctx, cancel := p.boundCtx(ctx)
		path, err := p.Snapshot(pctx)
		cancel()
		if err != nil && p.stopped() && ctx.Err() == nil {
			continue // moved to another host meanwhile, with its own snapshot
		}
		if err != nil {
			return "", partErr(p, err)
		}
		paths = append(paths, path)
	}
	return strings.Join(paths, ","), nil
}

// eventNames are the event names the analysis indexes know, sorted.
func (s *Server) eventNames() []string {
	if !s.isFront() {
		return s.analysis.EventNames()
	}
	var names []string
	for _, p := range s.partitions() {
		names = append(names, p.analysis.EventNames()...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// sharedCounters is a partition's Part whose segments report the
// evaluation errors of their predicates only in the first partition: the
// partitions run the same compiled predicates, whose counters are
// therefore every partition's total already (the merge would count them
// P times).
type sharedCounters struct {
	*scatter.Local
	first bool
}

func (l sharedCounters) Segments() []api.SegmentInfo {
	list := l.Local.Segments()
	if !l.first {
		for i := range list {
			list[i].EvalErrors, list[i].LastEvalError = 0, ""
		}
	}
	return list
}

func (l sharedCounters) SegmentDetail(segment string) (api.SegmentGetReply, error) {
	d, err := l.Local.SegmentDetail(segment)
	if !l.first {
		d.EvalErrors, d.LastEvalError = 0, ""
	}
	return d, err
}
