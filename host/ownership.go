package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/cluster"
)

// Several hosts on one NATS (docs/operations.md, "Running a standby"):
// with Config.HostID set, a segd joins ownership of the events stream
// through one lease (key p0of1 of cluster.OwnersBucket) for all of its
// partitions. Until it holds the lease it is a standby: Start waits, and
// nothing consumes, publishes or answers. Once it holds it, it restores
// each partition from the newest snapshot in the Object Store
// (cluster.SnapshotStore) or its own data dir, replays the log after it,
// and serves; each snapshot it writes is also put in the Object Store.
//
// Fencing: every Apply checks the lease first (an invalid lease fails it,
// so nothing is applied or acked), and when the lease ends without a
// release (expired: frozen or cut off; taken) the host closes its NATS
// connections at once, so no ack, change or reply leaves it after; Lost
// then reports it, and the caller closes the Server and starts it again,
// to stand by (segd serve does).
// The new owner deletes the deposed owner's durable consumers (each
// owner consumes through a durable named with its lease token), so a
// pull request the old one left at the server cannot take messages.

// ownershipLeaseKeyParts is the partition count of the one stream-wide
// lease: every host takes key p0of1, whatever the stream's partitions.
const ownershipLeaseKeyParts = 1

// ownership is the front's lease and snapshot store.
type ownership struct {
	owner *cluster.Owner
	lease atomic.Pointer[cluster.Lease]
	store *cluster.SnapshotStore
	// gained is closed by OnGain.
	gained   chan struct{}
	gainOnce sync.Once
	// closing is set by Close before it releases the lease: the release
	// is then no loss.
	closing atomic.Bool
	// lost is closed when the lease ended without a release.
	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error
	// fenced is set from the moment the lease is seen invalid.
	fenced atomic.Bool
	// handingOver lets the hand-over's snapshots into the Object Store.
	handingOver atomic.Bool
}

// ownerState is the front's ownership, nil when Config.HostID is empty.
func (s *Server) ownerState() *ownership {
	if s.own != nil {
		return s.own // the front's, or a partition's own lease (multihost.go)
	}
	if s.front != nil {
		return s.front.own
	}
	return s.own
}

// valid reports whether writes are allowed: the lease is held and valid.
func (o *ownership) valid() bool {
	if o.fenced.Load() {
		return false
	}
	l := o.lease.Load()
	if l == nil || !l.Valid() {
		o.fenced.Store(l != nil)
		return false
	}
	return true
}

// errNotOwner fails an Apply after the lease ended.
var errNotOwner = errors.New("this host no longer holds the stream's lease; another host owns it")

// fencedIngester applies nothing once the lease is no longer valid: the
// message stays unacked for the next owner.
type fencedIngester struct {
	bus.Ingester
	own *ownership
}

func (f fencedIngester) Apply(ctx context.Context, msg *bus.IngestMessage) error {
	if !f.own.valid() {
		return errNotOwner
	}
	return f.Ingester.Apply(ctx, msg)
}

// joinOwnership joins the owners bucket and waits until this host holds
// the stream's lease, logging which host holds it meanwhile. ctx ends the
// wait (Start then fails).
func (s *Server) joinOwnership(ctx context.Context) error {
	cfg := s.cfg
	o := &ownership{gained: make(chan struct{}), lost: make(chan struct{})}
	s.own = o
	// Joining while another host holds the lease could move it here
	// (cluster.Share gives a single key to the host that sorts first):
	// a standby joins only once the lease is free.
	if err := s.waitLeaseFree(ctx); err != nil {
		return err
	}
	// Joining is bounded (a previous run's host key expires within a
	// lease): a request NATS refuses (permissions) would otherwise be
	// retried as transient for ever.
	jctx, cancel := context.WithTimeout(ctx, 2*s.lease()+joinTimeout)
	defer cancel()
	var err error
	o.owner, err = cluster.Join(jctx, s.js, cluster.Options{
		HostID:     cfg.HostID,
		Partitions: ownershipLeaseKeyParts,
		Lease:      cfg.Lease,
		Replicas:   cfg.Replicas,
		Logger:     cfg.Logger,
		OnGain: func(l *cluster.Lease) {
			o.lease.Store(l)
			o.gainOnce.Do(func() { close(o.gained) })
		},
		OnLose: func(l *cluster.Lease, why error) { s.leaseEnded(l, why) },
	})
	if err != nil {
		return fmt.Errorf("ownership (--host-id %s): %w%s", cfg.HostID, err, permHint)
	}
	waited := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastHolder := ""
	for {
		select {
		case <-o.gained:
			l := o.lease.Load()
			cfg.Logger.Info("this host owns the stream", "host", cfg.HostID, "token", l.Token,
				"waited", time.Since(waited).Round(time.Millisecond))
			return s.openSnapshotStore(ctx)
		case <-ctx.Done():
			return fmt.Errorf("standby %s stopped before it took the stream over: %w", cfg.HostID, ctx.Err())
		case <-tick.C:
			holder := "none (its lease is expiring)"
			if h, ok := o.owner.Holder(0); ok {
				holder = h.Host
			}
			if holder != lastHolder {
				lastHolder = holder
				cfg.Logger.Info("standby: another host owns the stream; this one consumes nothing, publishes nothing and answers nothing until it takes over",
					"host", cfg.HostID, "owner", holder)
			}
		}
	}
}

// waitLeaseFree waits, without joining, until no host holds the
// stream's lease: its key is absent, deleted, expired, or not renewed for
// longer than a lease (its holder is gone and the expiry has not been
// seen yet). It logs the holder while it waits.
func (s *Server) waitLeaseFree(ctx context.Context) error {
	// Retried while JetStream is slow or between leaders (hosts starting
	// at once on a loaded cluster timed out here and exited).
	lctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	var kv jetstream.KeyValue
	var err error
	for {
		kv, err = s.js.KeyValue(lctx, cluster.OwnersBucket)
		if err == nil || errors.Is(err, jetstream.ErrBucketNotFound) || !cluster.Transient(err) || lctx.Err() != nil {
			break
		}
		select {
		case <-lctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil // nobody has ever owned the stream
	}
	if err != nil {
		return fmt.Errorf("ownership: bucket %s: %w%s", cluster.OwnersBucket, err, permHint)
	}
	w, err := kv.Watch(ctx, cluster.PartitionKey(0, ownershipLeaseKeyParts))
	if err != nil {
		return fmt.Errorf("ownership: watch %s: %w%s", cluster.OwnersBucket, err, permHint)
	}
	defer w.Stop()
	lease := s.lease()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var held bool
	var seen time.Time
	var holder string
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("ownership: watch %s stopped", cluster.OwnersBucket)
			}
			if e == nil { // the current value, if any, was delivered
				if !held {
					return nil
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				return nil // released or expired
			}
			held, seen = true, time.Now()
			var v struct {
				Host string `json:"host"`
			}
			_ = json.Unmarshal(e.Value(), &v)
			if v.Host != holder {
				holder = v.Host
				s.cfg.Logger.Info("standby: another host owns the stream; this one consumes nothing, publishes nothing and answers nothing until it takes over",
					"host", s.cfg.HostID, "owner", holder)
			}
		case <-tick.C:
			if held && time.Since(seen) > lease+2*time.Second {
				return nil // not renewed for longer than a lease
			}
		case <-ctx.Done():
			return fmt.Errorf("standby %s stopped before it took the stream over: %w", s.cfg.HostID, ctx.Err())
		}
	}
}

// joinTimeout bounds joining the owners, besides waiting out a previous
// run's host key.
const joinTimeout = 30 * time.Second

// permHint ends an ownership error: NATS refusing segd's requests is the
// likely cause.
const permHint = " (with a restricted NATS user, segd needs the permissions docs/security.md gives its identity: the SEGD_OWNERS and SEGD_SNAPSHOTS buckets)"

// lease is Config.Lease or its default.
func (s *Server) lease() time.Duration {
	if s.cfg.Lease == 0 {
		return cluster.DefaultLease
	}
	return s.cfg.Lease
}

// openSnapshotStore opens the Object Store of snapshots (not with
// NoSnapshots).
func (s *Server) openSnapshotStore(ctx context.Context) error {
	if s.cfg.NoSnapshots {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	st, err := cluster.OpenSnapshots(octx, s.js, cluster.SnapshotOptions{Replicas: s.cfg.Replicas})
	if err != nil {
		return fmt.Errorf("%w%s", err, permHint)
	}
	s.own.store = st
	return nil
}

// leaseEnded is OnLose: a release by Close is expected. Otherwise this
// host is fenced at once; when the Owner gave the lease back to move it
// (a host that sorts first joined: cluster.Share), the key is deleted
// only after this returns, so it first hands over cleanly: it stops
// consuming and writes a last snapshot, in the Object Store too, for the
// next owner to start from.
func (s *Server) leaseEnded(l *cluster.Lease, why error) {
	o := s.own
	if o.closing.Load() && errors.Is(why, cluster.ErrReleased) {
		return
	}
	o.fenced.Store(true)
	if errors.Is(why, cluster.ErrReleased) {
		// The key stands until this returns: stop, snapshot, then let go
		// (the connection stays open for the key's deletion).
		s.cfg.Logger.Warn("handing the stream over to another host", "host", s.cfg.HostID, "lease", l.String())
		s.handOver()
	} else {
		// The key may be someone else's already. Closing the connections
		// stops every ack, change publish and reply that could still be
		// under way.
		s.cfg.Logger.Error("lost the stream's lease: stopped all ingest, changes and replies",
			"host", s.cfg.HostID, "lease", l.String(), "reason", why)
		for _, p := range s.parts {
			if p.nc != nil && p.nc != s.nc {
				p.nc.Close()
			}
		}
		if s.nc != nil {
			s.nc.Close()
		}
		// Nothing can be stored now: the feed gives up at once rather
		// than hold a snapshot or the shutdown for its grace (the next
		// owner replays and publishes what is not stored).
		for _, p := range s.partitions() {
			if p.segAPI != nil && p.segAPI.feed != nil {
				p.segAPI.feed.Closing(0)
			}
		}
	}
	o.lostOnce.Do(func() {
		o.lostErr = fmt.Errorf("host %s no longer owns the stream (%w)", s.cfg.HostID, why)
		close(o.lost)
	})
}

// handOver stops the consumers and snapshots each partition (bounded by
// handOverTimeout), while the released lease's key still stands.
func (s *Server) handOver() {
	o := s.own
	o.handingOver.Store(true)
	defer o.handingOver.Store(false)
	parts := s.partitions()
	for _, p := range parts {
		if p.consumer != nil {
			p.consumer.Stop()
		}
	}
	if s.service != nil {
		_ = s.service.Stop() // no more replies from here
	}
	ctx, cancel := context.WithTimeout(context.Background(), handOverTimeout)
	defer cancel()
	for _, p := range parts {
		if p.started && p.snaps != nil {
			if _, err := p.Snapshot(ctx); err != nil {
				p.cfg.Logger.Warn("hand-over snapshot failed; the next owner replays from an older one", "error", err)
			}
		}
	}
}

// handOverTimeout bounds the hand-over's snapshots.
const handOverTimeout = time.Minute

// Lost is closed when this host lost the stream's lease without
// releasing it (frozen or cut off past the lease, see Config.Lease): it
// has stopped ingest, changes and replies, and should be closed and
// restarted, to stand by. Nil without Config.HostID.
func (s *Server) Lost() <-chan struct{} {
	if s.own == nil {
		return nil
	}
	return s.own.lost
}

// LostErr says why Lost was closed.
func (s *Server) LostErr() error {
	if s.own == nil {
		return nil
	}
	select {
	case <-s.own.lost:
		return s.own.lostErr
	default:
		return nil
	}
}

// isFenced reports whether this host has lost the lease.
func (s *Server) isFenced() bool {
	o := s.ownerState()
	return o != nil && o.fenced.Load()
}

// leaveOwnership releases the lease (after the last snapshot) and leaves.
func (s *Server) leaveOwnership() {
	if s.own == nil || s.own.owner == nil {
		return
	}
	s.own.closing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.own.owner.Close(ctx); err != nil && !s.own.fenced.Load() {
		s.cfg.Logger.Warn("ownership: release failed; the lease expires instead", "error", err)
	}
}

// durable is the partition's durable consumer: with ownership, named
// with the lease token, so each owner has its own.
func (s *Server) durable() string {
	base := bus.PartitionDurable(s.part.n, s.part.of)
	if o := s.ownerState(); o != nil {
		if l := o.lease.Load(); l != nil {
			return base + "-o" + strconv.FormatUint(l.Token, 10)
		}
	}
	return base
}

// dropStaleDurables deletes the durables earlier owners consumed
// through (and the plain ones of a segd without ownership), so that none
// of their pull requests is left waiting at the server.
func (s *Server) dropStaleDurables(ctx context.Context) error {
	return s.dropStaleDurablesOf(ctx, s.partitions())
}

// dropStaleDurablesOf is dropStaleDurables for the partitions parts only.
func (s *Server) dropStaleDurablesOf(ctx context.Context, parts []*Server) error {
	mine := map[string]bool{}
	var bases []string
	for _, p := range parts {
		mine[p.durable()] = true
		bases = append(bases, bus.PartitionDurable(p.part.n, p.part.of))
	}
	stream, err := s.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	names := stream.ConsumerNames(ctx)
	var stale []string
	for n := range names.Name() {
		if mine[n] {
			continue
		}
		for _, b := range bases {
			if n == b || strings.HasPrefix(n, b+"-o") {
				stale = append(stale, n)
				break
			}
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("events stream: list consumers: %w", err)
	}
	for _, n := range stale {
		if err := s.js.DeleteConsumer(ctx, bus.EventsStream, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("events stream: delete an earlier owner's consumer %s: %w", n, err)
		}
		s.cfg.Logger.Info("deleted an earlier owner's consumer", "durable", n)
	}
	return nil
}

// pullSnapshot copies partition p's newest snapshot from the Object
// Store into its snapshot dir when it is newer than the newest there;
// the ordinary restore then loads it (and falls back to older files if
// it does not load).
func (s *Server) pullSnapshot(ctx context.Context, p *Server) error {
	o := p.ownerState()
	if o == nil || o.store == nil {
		return nil
	}
	info, err := o.store.Newest(ctx, p.part.n, p.part.of)
	if errors.Is(err, cluster.ErrNoSnapshot) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	local := &snapshots{dir: p.snapshotDir()}
	files, err := local.list()
	if err != nil {
		return fmt.Errorf("snapshots: %w", err)
	}
	if len(files) > 0 {
		if seq, ok := snapshotFileSeq(files[0]); ok && seq >= info.Seq {
			return nil // ours is as new
		}
	}
	t0 := time.Now()
	r, err := o.store.Get(ctx, info)
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	defer r.Close()
	if err := os.MkdirAll(local.dir, 0o755); err != nil {
		return err
	}
	name := snapshotName(info.Seq)
	f, err := os.CreateTemp(local.dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(local.dir, name))
	}
	if err != nil {
		return fmt.Errorf("snapshot %s from the Object Store: %w", info.Name, err)
	}
	p.cfg.Logger.Info("snapshot copied from the Object Store", "object", info.Name, "seq", info.Seq,
		"written_by", info.Host, "bytes", n, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// snapshotFileSeq reads the sequence off a snapshot file's name.
func snapshotFileSeq(path string) (uint64, bool) {
	n := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), snapPrefix), snapSuffix)
	seq, err := strconv.ParseUint(n, 10, 64)
	return seq, err == nil
}

// pushSnapshot puts a snapshot file just written in the Object Store and
// prunes the partition's objects to Config.SnapshotKeep. A failure is
// logged: the local file stands, and the next snapshot tries again.
func (s *Server) pushSnapshot(ctx context.Context, path string, seq uint64) {
	o := s.ownerState()
	if o == nil || o.store == nil || !(o.valid() || o.handingOver.Load()) {
		return
	}
	t0 := time.Now()
	err := func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = o.store.Put(ctx, cluster.SnapshotInfo{Partition: s.part.n, Partitions: s.part.of, Seq: seq,
			Host: s.cfg.HostID, Token: o.lease.Load().Token}, f)
		if err != nil {
			return err
		}
		_, err = o.store.Prune(ctx, s.part.n, s.part.of, s.cfg.SnapshotKeep)
		return err
	}()
	if err != nil {
		s.cfg.Logger.Warn("snapshot not copied to the Object Store; the next one tries again", "file", path, "error", err)
		return
	}
	s.cfg.Logger.Debug("snapshot copied to the Object Store", "file", path, "seq", seq, "took", time.Since(t0))
}
