package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/remotepart"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/rules"
)

// Several active hosts (docs/operations.md, "Several active hosts"): with
// Config.HostID and Config.Partitions P > 1, every host joins the owners
// (cluster.Owner) with P leases, keys p<N>of<P> of cluster.OwnersBucket,
// and runs only the partitions it holds a lease for; the Owner gives each
// live host a fair share and moves partitions when hosts join or leave.
//
//   - Gaining partition n starts it beside the others, which go on: its
//     newest snapshot is pulled from the Object Store, its engine runs
//     the definitions current now (a snapshot made under older ones
//     rebuilds what changed), its consumer reads through a durable named
//     with the lease's token (an earlier owner's durables of n are
//     deleted first), its change feed resumes, and the Router answers
//     other hosts' requests for it. Every Apply checks n's lease.
//   - Losing it by a release (rebalance, shutdown) stops its consumer,
//     then snapshots it, locally and in the Object Store, while its key
//     still stands, so the next owner starts from there. Losing it
//     otherwise (expired: frozen or cut off; taken) fences it at once:
//     its own NATS connection, which carries its acks and change
//     publishes, is closed.
//   - The public API is served by every host from the start: the front's
//     Scatter has one slot per partition, the partition's Local Part while
//     it runs here, a remote one otherwise, swapped atomically.
//
// P = 1 with a host id keeps the standby of ownership.go (one host owns
// the stream, the others wait).

// multiHost is a front's share of the partitions and the means to reach
// the others.
type multiHost struct {
	s      *Server
	owner  *cluster.Owner
	joined chan struct{} // closed once owner is set
	store  *cluster.SnapshotStore
	router *cluster.Router
	stream jetstream.Stream
	slots  []*slot
	// remotes are the partitions' remote Parts (remotepart), one each,
	// kept across swaps (each remembers the segment ids it last saw).
	remotes []scatter.Part
	// defs answers for segment definitions while no partition runs here
	// (defEngine): an engine of the definitions at start, never fed.
	defs *engine.Engine
	// closing is set by Close (under mu): a partition gained from then on
	// is not started, and its release is the shutdown's.
	closing atomic.Bool
	// startSlots bounds the partitions starting at once (startsAtOnce).
	startSlots chan struct{}
	// startsUnderWay counts the starts (queued or running), so that Close
	// waits for them before it stops what runs.
	startsUnderWay sync.WaitGroup

	mu      sync.Mutex
	running map[int]*Server
	// starts are the starts under way, by lease: a loss cancels its
	// lease's start and waits for it before it stops the partition.
	starts map[*cluster.Lease]*startRun
	// locals are the Local Parts of the partitions running here, from
	// the end of their start to the start of their stop.
	locals map[int]scatter.Part
	// gains and losses count the partitions started and stopped here.
	gains, losses uint64
}

// multiMode reports whether this front shares its partitions with other
// hosts.
func (s *Server) multiMode() bool { return s.cfg.HostID != "" && s.cfg.Partitions > 1 }

// isFront reports whether s serves merged partitions (one host's P, or a
// share of P over several hosts) rather than one engine of its own.
func (s *Server) isFront() bool { return s.parts != nil || s.multi != nil }

// list returns the partitions running here, in partition order.
func (m *multiHost) list() []*Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Server, 0, len(m.running))
	for _, p := range m.running {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Server) int { return a.part.n - b.part.n })
	return out
}

// Owned lists the partitions this host runs under a valid lease, in
// order (nil unless several hosts share the partitions). A partition
// whose lease has ended leaves the list at once, before it has stopped:
// it applies nothing from then on.
func (s *Server) Owned() []int {
	if s.multi == nil {
		return nil
	}
	out := []int{}
	for _, p := range s.multi.list() {
		if p.own.valid() {
			out = append(out, p.part.n)
		}
	}
	return out
}

// startMulti prepares the front of a share of the partitions: the
// snapshot store, the Router, the scatter over slots (every partition
// remote until gained) and the definitions engine. Nothing runs yet:
// joinMulti joins the owners once the service is up.
func (s *Server) startMulti(ctx context.Context, stream jetstream.Stream, segments []*rules.Segment, revisions map[string]uint64) error {
	m := &multiHost{s: s, joined: make(chan struct{}), stream: stream, running: map[int]*Server{}, locals: map[int]scatter.Part{}, router: cluster.NewRouter(s.nc),
		starts: map[*cluster.Lease]*startRun{}, startSlots: make(chan struct{}, startsAtOnce)}
	s.multi = m
	if !s.cfg.NoSnapshots {
		octx, cancel := context.WithTimeout(ctx, joinTimeout)
		defer cancel()
		st, err := cluster.OpenSnapshots(octx, s.js, cluster.SnapshotOptions{Replicas: s.cfg.Replicas})
		if err != nil {
			return fmt.Errorf("%w%s", err, permHint)
		}
		m.store = st
	}
	m.defs = engine.New(engine.Config{Segments: segments, Location: s.cfg.Location, Clock: s.cfg.Clock, Logger: s.cfg.Logger,
		RetentionDays: s.retentionDays(), FingerprintExtra: s.pluginVersions, MaxFutureSkew: s.cfg.MaxFutureSkew, Revisions: revisions,
		MaxUsers: scatter.MaxUsers(s.cfg.Partitions)})
	parts := make([]scatter.Part, s.cfg.Partitions)
	m.slots = make([]*slot, s.cfg.Partitions)
	m.remotes = make([]scatter.Part, s.cfg.Partitions)
	for n := range parts {
		m.remotes[n] = remotepart.New(s.nc, n, s.cfg.Partitions, remotepart.Options{Location: s.cfg.Location, Clock: m.defs.Now,
			Forward: cluster.ForwardOptions{MaxWait: remoteMaxWait}})
		m.slots[n] = newSlot(m.remotes[n])
		parts[n] = m.slots[n]
	}
	// Other hosts' requests for the partitions running here are answered
	// from their Local Parts (never from a slot, which could send them
	// back out).
	if err := remotepart.Serve(m.router, m.local); err != nil {
		return err
	}
	var err error
	s.scatter, err = scatter.New(parts, scatter.Options{})
	return err
}

// remoteMaxWait is how long a request waits for a moving partition's
// new owner before it answers 503 naming it: under the Go client's
// default request timeout (5 s), so that the client gets the reason
// rather than a timeout of its own.
const remoteMaxWait = 4 * time.Second

// remote is the Part of partition n while another host owns it.
func (m *multiHost) remote(n int) scatter.Part { return m.remotes[n] }

// local is the Part of partition n if it runs here and answers.
func (m *multiHost) local(n int) (scatter.Part, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.locals[n]
	return p, ok
}

// joinMulti joins the owners: from here on the Owner calls gained and
// lost as this host's share changes.
func (s *Server) joinMulti(ctx context.Context) error {
	m := s.multi
	jctx, cancel := context.WithTimeout(ctx, 2*s.lease()+joinTimeout)
	defer cancel()
	owner, err := cluster.Join(jctx, s.js, cluster.Options{
		HostID:     s.cfg.HostID,
		Partitions: s.cfg.Partitions,
		Lease:      s.cfg.Lease,
		Replicas:   s.cfg.Replicas,
		Logger:     s.cfg.Logger,
		OnGain:     m.gained,
		OnLose:     m.lost,
	})
	if err != nil {
		return fmt.Errorf("ownership (--host-id %s): %w%s", s.cfg.HostID, err, permHint)
	}
	m.owner = owner
	close(m.joined)
	s.cfg.Logger.Info("joined the hosts sharing the partitions", "host", s.cfg.HostID, "partitions", s.cfg.Partitions,
		"hosts", owner.Hosts())
	return nil
}

// startsAtOnce is how many gained partitions start side by side. A
// start is mostly waiting on NATS (the snapshot's download, the stream's
// and consumers' requests), so a host that gains many at once (another
// died, or left) serves them again in a fraction of the time of one
// after another; the bound keeps the snapshots being read at once (and
// their memory) few. Compiling the rules and loading the snapshot into
// the engine still go one at a time, under the rules' lock.
const startsAtOnce = 4

// startRun is a start under way: lost cancels it and waits for done.
type startRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// gained is OnGain: it starts partition l.Partition here, in the
// background (at most startsAtOnce at once), so that the Owner goes on
// acquiring the rest of this host's share meanwhile. The Owner's promise
// that a loss comes after its gain is kept here: lost cancels the lease's
// start and waits for it. A partition that cannot start is given back
// (another host, or this one later, tries again).
func (m *multiHost) gained(l *cluster.Lease) {
	m.mu.Lock()
	if m.closing.Load() {
		m.mu.Unlock()
		return // released by the shutdown that is under way
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &startRun{cancel: cancel, done: make(chan struct{})}
	m.starts[l] = run
	m.startsUnderWay.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.startsUnderWay.Done()
		defer close(run.done)
		defer cancel()
		defer func() {
			m.mu.Lock()
			delete(m.starts, l)
			m.mu.Unlock()
		}()
		select {
		case m.startSlots <- struct{}{}:
			defer func() { <-m.startSlots }()
		case <-ctx.Done():
			return // lost before its turn came
		}
		if m.closing.Load() {
			return // queued when the shutdown began
		}
		m.startGained(ctx, l)
	}()
}

// startGained starts partition l.Partition and logs how it went.
func (m *multiHost) startGained(ctx context.Context, l *cluster.Lease) {
	t0 := time.Now()
	p, err := m.start(ctx, l)
	if err != nil {
		if !l.Valid() {
			m.s.cfg.Logger.Info("a partition's lease ended while it started; stopped it", "partition", l.Partition,
				"lease", l.String(), "error", err)
			return
		}
		m.s.cfg.Logger.Error("could not start a partition this host gained; giving it back after a lease", "partition", l.Partition,
			"lease", l.String(), "error", err)
		// After a lease, so that a cause that lasts (NATS refusing a
		// request) costs a try per lease, not a loop of them: the Owner
		// takes a partition back at once while below its share.
		go func() {
			<-m.joined
			t := time.NewTimer(m.s.lease())
			defer t.Stop()
			select {
			case <-t.C:
			case <-l.Done():
				return
			}
			m.owner.Release(l)
		}()
		return
	}
	m.mu.Lock()
	m.gains++
	m.mu.Unlock()
	p.cfg.Logger.Info("partition started on this host", "host", m.s.cfg.HostID, "token", l.Token,
		"replaying_from_seq", p.replayFrom, "took", time.Since(t0).Round(time.Millisecond))
}

// start runs partition l.Partition: see the comment at the top.
// ctx ends when the lease does (lost cancels it).
func (m *multiHost) start(ctx context.Context, l *cluster.Lease) (_ *Server, err error) {
	s := m.s
	n := l.Partition
	p := s.newPartition(n)
	p.own = &ownership{store: m.store, gained: make(chan struct{}), lost: make(chan struct{})}
	close(p.own.gained)
	p.own.lease.Store(l)
	defer func() {
		if err != nil {
			m.stopPart(p, false)
			err = partErr(p, err)
		}
	}()
	if err := s.dial(p); err != nil {
		return nil, err
	}
	if err := s.pullSnapshot(ctx, p); err != nil {
		return nil, err
	}
	// The definitions current now, compiled for this partition; rule
	// changes queued from here on reach it (it is running before the
	// rules' lock is let go, and the applier lists the partitions only
	// after taking a change off its queue under that lock).
	a := s.rules
	a.mu.Lock()
	set, _, release, err := a.compile(nil)
	if err == nil {
		revs := make(map[string]uint64, len(a.defs))
		for id, e := range a.defs {
			revs[id] = e.Revision
		}
		if _, err = p.startEngine(ctx, m.stream, set.Segments, revs); err == nil {
			m.mu.Lock()
			m.running[n] = p
			m.mu.Unlock()
		}
	}
	a.mu.Unlock()
	if err != nil {
		if release != nil {
			release()
		}
		return nil, fmt.Errorf("rules: %w", err)
	}
	release(set.Segments...)
	p.dlq, p.metrics = s.dlq, s.metrics
	if err := s.dropStaleDurablesOf(ctx, []*Server{p}); err != nil {
		return nil, err
	}
	if err := p.startConsumer(); err != nil {
		return nil, err
	}
	p.startLoops()
	local := sharedCounters{scatter.NewLocal(scatter.LocalConfig{Engine: p.engine, Index: p.analysis,
		Predicates: s.predicateIDs(), Replaying: p.rebuilding, Status: p.completeStatus}), true}
	go m.serveWhenCaughtUp(p, l, local)
	if err := m.router.Serve(l); err != nil {
		// This host answers for it; other hosts' requests wait for the
		// next owner.
		p.cfg.Logger.Error("other hosts cannot reach this partition through this host", "error", err)
	}
	if !l.Valid() {
		return nil, errors.New("the lease ended while the partition started")
	}
	return p, nil
}

// serveWhenCaughtUp answers for partition p from here (its slot, and
// other hosts' requests) once it has replayed the log up to where it
// stood at its start: until then its counts and lists are those of an
// older point of the log, which merged with the other partitions' would
// be no answer of any one point, so requests for it meanwhile wait for
// it (remotepart retries while the owner answers 503 "not serving yet")
// or end as a 503 naming it.
func (m *multiHost) serveWhenCaughtUp(p *Server, l *cluster.Lease, local scatter.Part) {
	for {
		changed := p.segAPI.waiter.Changed()
		if !p.rebuilding() {
			break
		}
		select {
		case <-changed:
		case <-l.Done():
			return
		case <-p.runCtx.Done():
			return
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running[p.part.n] != p || !l.Valid() {
		return // stopped meanwhile
	}
	m.locals[p.part.n] = local
	m.slots[p.part.n].set(local)
}

// predicateIDs are the ids of the rule files' named predicates.
func (s *Server) predicateIDs() []string {
	var ids []string
	for _, p := range s.predicates {
		ids = append(ids, p.ID)
	}
	return ids
}

// lost is OnLose: the partition stops being answered here at once, then
// stops; a release hands it over with a snapshot, any other end fences
// it first.
func (m *multiHost) lost(l *cluster.Lease, why error) {
	n := l.Partition
	// A start under way ends first (the lease is no longer Valid, so it
	// fails, stopping what it started, unless it had just finished).
	m.mu.Lock()
	run := m.starts[l]
	m.mu.Unlock()
	if run != nil {
		run.cancel()
		<-run.done
	}
	m.mu.Lock()
	p := m.running[n]
	if p == nil || p.own.lease.Load() != l {
		m.mu.Unlock()
		return // never started (closing, or its start failed)
	}
	delete(m.locals, n)
	m.slots[n].set(m.remote(n))
	m.mu.Unlock()
	m.router.Stop(n)
	released := errors.Is(why, cluster.ErrReleased)
	if released {
		p.own.handingOver.Store(true)
		p.cfg.Logger.Info("handing a partition over to another host", "host", m.s.cfg.HostID, "lease", l.String(),
			"shutdown", m.closing.Load())
	} else {
		// The key may be another host's already: no ack, change publish
		// or reply may leave for this partition from now on.
		p.own.fenced.Store(true)
		if p.nc != nil {
			p.nc.Close()
		}
		if p.segAPI != nil && p.segAPI.feed != nil {
			p.segAPI.feed.Closing(0)
		}
		p.cfg.Logger.Error("lost a partition's lease: stopped its ingest, changes and replies; the others go on",
			"host", m.s.cfg.HostID, "lease", l.String(), "reason", why)
	}
	m.stopPart(p, released)
	m.mu.Lock()
	m.losses++
	m.mu.Unlock()
}

// stopPart stops partition p: its consumer, a last snapshot if asked
// (bounded by Config.ShutdownSnapshotTimeout; none when nothing was
// applied since the last), its engine and loops, its feed and its
// connection. It is safe on a partly started partition.
func (m *multiHost) stopPart(p *Server, snapshot bool) {
	m.mu.Lock()
	if m.running[p.part.n] == p {
		delete(m.running, p.part.n)
		delete(m.locals, p.part.n)
		m.slots[p.part.n].set(m.remote(p.part.n))
	}
	m.mu.Unlock()
	if !p.own.fenced.Load() {
		p.closingChanges()
	}
	if p.consumer != nil {
		p.consumer.Stop()
	}
	p.stopSnapshots()
	if snapshot && p.started && p.snaps != nil {
		if err := p.shutdownSnapshot(); err != nil {
			p.cfg.Logger.Warn("hand-over snapshot failed; the next owner replays from an older one", "error", err)
		}
	}
	if p.cancel != nil {
		p.cancel()
		<-p.engineDone
	}
	if p.rebuildDone != nil {
		<-p.rebuildDone
	}
	if p.recovery != nil {
		<-p.recovery.done
	}
	p.closeChanges()
	if p.nc != nil {
		p.nc.Close()
	}
}

// closeMulti is the shutdown of a share: every partition stops
// consuming and snapshots at once (each within
// Config.ShutdownSnapshotTimeout), then the leases are released one by
// one, each after its partition's snapshot, so that other hosts take
// them over from it.
func (s *Server) closeMulti() {
	m := s.multi
	m.mu.Lock()
	m.closing.Store(true)
	m.mu.Unlock()
	// The starts under way end first (those still queued skip); none
	// begins after (closing, set under mu as gained checks it).
	m.startsUnderWay.Wait()
	parts := m.list()
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			p.closingChanges()
			if p.consumer != nil {
				p.consumer.Stop()
			}
			p.stopSnapshots()
			if p.started && p.snaps != nil && p.own.valid() {
				if err := p.shutdownSnapshot(); err != nil {
					p.cfg.Logger.Warn("shutdown snapshot failed; the next owner replays from an older one", "error", err)
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-m.joined:
		// The snapshots are written: each release finds nothing new.
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.lease()+10*time.Second)
		if err := m.owner.Close(ctx); err != nil {
			s.cfg.Logger.Warn("ownership: release failed; the leases expire instead", "error", err)
		}
		cancel()
	default:
	}
	m.router.Close()
	for _, p := range m.list() { // those the Owner could not release
		m.stopPart(p, false)
	}
}

// waitAppliedElsewhere is WaitApplied for the partitions not running
// here: it asks each (through its slot: the owner's status) until it has
// applied every message it reads up to seq. The partitions running here
// are waited for by WaitApplied itself.
func (m *multiHost) waitAppliedElsewhere(ctx context.Context, seq uint64) error {
	s := m.s
	var events jetstream.Stream
	for n, sl := range m.slots {
		if _, here := m.local(n); here {
			continue
		}
		target := seq
		for {
			if events == nil {
				var err error
				if events, err = s.js.Stream(ctx, bus.EventsStream); err != nil && ctx.Err() != nil {
					return ctx.Err()
				}
			}
			if events != nil {
				// Its last message up to now, if before seq, is all it
				// waits for.
				if last, err := bus.LastPartitionSeq(ctx, events, n, s.cfg.Partitions); err == nil {
					target = min(seq, last)
					break
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(waitAppliedRetry):
			}
		}
		for sl.Status().LastSeq < target {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(waitElsewhereEvery):
			}
		}
	}
	return nil
}

// waitElsewhereEvery is how often waitAppliedElsewhere asks a partition
// on another host how far it has applied.
const waitElsewhereEvery = 20 * time.Millisecond
