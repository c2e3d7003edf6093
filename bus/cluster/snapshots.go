package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SnapshotsBucket is the Object Store bucket of partition snapshots, one
// object per snapshot named p<N>of<P>/<seq>.
const SnapshotsBucket = "SEGD_SNAPSHOTS"

// attemptTimeout bounds one request to the bucket before it is retried.
const attemptTimeout = 5 * time.Second

// ErrNoSnapshot: the partition has no snapshot yet (start from an empty
// state and replay the log from its beginning).
var ErrNoSnapshot = errors.New("no snapshot")

// SnapshotOptions configures OpenSnapshots.
type SnapshotOptions struct {
	// Replicas of the bucket when this host creates it (default 1; use 3
	// on a 3-node cluster so that a takeover finds the snapshot even with
	// a node down).
	Replicas int
	// MaxBytes caps the bucket (0: no cap). A put past it fails and the
	// previous snapshots stay; prune keeps the bucket small.
	MaxBytes int64
	// Compression stores chunks compressed (s2) on the servers.
	Compression bool
}

// SnapshotStore keeps partition snapshots where every host can read them.
//
// A snapshot is the state after applying the log up to Seq, a function of
// the log prefix only; so a deposed owner's late put is still a true
// snapshot of Seq and needs no fencing. Its Token and Host are recorded
// for the operator.
type SnapshotStore struct {
	os jetstream.ObjectStore
}

// SnapshotInfo describes one stored snapshot.
type SnapshotInfo struct {
	Partition, Partitions int
	// Seq is the last events-stream sequence the snapshot includes.
	Seq uint64
	// Host and Token name the writer and its lease token.
	Host    string
	Token   uint64
	Size    uint64
	ModTime time.Time
	// Name is the object's name, p<N>of<P>/<seq>.
	Name string
}

// SnapshotName is the object name of partition n of p's snapshot at seq.
func SnapshotName(n, p int, seq uint64) string {
	return PartitionKey(n, p) + "/" + strconv.FormatUint(seq, 10)
}

// OpenSnapshots opens the snapshots bucket, creating it if needed; like
// the reads, it retries while the bucket is between leaders, until ctx
// ends.
func OpenSnapshots(ctx context.Context, js jetstream.JetStream, opts SnapshotOptions) (*SnapshotStore, error) {
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	var obj jetstream.ObjectStore
	err := retryTransient(ctx, func(ctx context.Context) (err error) {
		obj, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      SnapshotsBucket,
			Description: "segd partition snapshots, p<N>of<P>/<seq>",
			Replicas:    opts.Replicas,
			MaxBytes:    opts.MaxBytes,
			Compression: opts.Compression,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obj, err = js.ObjectStore(ctx, SnapshotsBucket)
		}
		return notUpYet(err)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %s: %w", SnapshotsBucket, err)
	}
	return &SnapshotStore{os: obj}, nil
}

func checkPartition(n, p int) error {
	if p < 1 || p > MaxPartitions || n < 0 || n >= p {
		return fmt.Errorf("cluster: partition %d of %d: want 0 <= N < P <= %d", n, p, MaxPartitions)
	}
	return nil
}

// Put stores a snapshot of partition info.Partition of info.Partitions at
// info.Seq, streaming r in chunks (it is never held in memory whole). The
// object becomes visible only once complete: a reader never sees half a
// snapshot, and a failed put leaves the previous ones untouched. Putting
// the same Seq again replaces it. Put is not retried inside (r is consumed):
// after an error, put again with a fresh reader. A put that makes no
// progress for 5s (nothing read from r, or no acks after the last chunk)
// is abandoned; its chunks may stay in the bucket unreferenced.
func (s *SnapshotStore) Put(ctx context.Context, info SnapshotInfo, r io.Reader) (SnapshotInfo, error) {
	if err := checkPartition(info.Partition, info.Partitions); err != nil {
		return SnapshotInfo{}, err
	}
	name := SnapshotName(info.Partition, info.Partitions, info.Seq)
	// A watchdog abandons a put that stops making progress: publishes to a
	// stream between leaders are dropped, and the client would wait for
	// their acks until ctx ends.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr := &progressReader{r: r}
	pr.touch()
	stop := make(chan struct{})
	defer close(stop)
	go pr.watch(stop, cancel)
	oi, err := s.os.Put(pctx, jetstream.ObjectMeta{
		Name: name,
		Metadata: map[string]string{
			"host":  info.Host,
			"token": strconv.FormatUint(info.Token, 10),
		},
	}, pr)
	if err != nil {
		if cause := context.Cause(pctx); errors.Is(cause, errStalled) {
			err = cause
		}
		return SnapshotInfo{}, fmt.Errorf("cluster: put snapshot %s: %w", name, err)
	}
	got, ok := parseInfo(oi)
	if !ok {
		return SnapshotInfo{}, fmt.Errorf("cluster: put snapshot %s: stored under an unexpected name %q", name, oi.Name)
	}
	return got, nil
}

// errStalled ends a put that made no progress for attemptTimeout.
var errStalled = fmt.Errorf("no progress for %s (is the bucket between leaders?); put again", attemptTimeout)

// progressReader records when the object store last read from it.
type progressReader struct {
	r    io.Reader
	last atomic.Int64 // unix nanoseconds
}

func (p *progressReader) touch() { p.last.Store(time.Now().UnixNano()) }

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.touch()
	return n, err
}

// watch cancels the put once nothing was read for attemptTimeout: while
// the chunks flow the store reads, and after the last one it waits for
// the acks, which on a healthy bucket take far less.
func (p *progressReader) watch(stop <-chan struct{}, cancel context.CancelCauseFunc) {
	t := time.NewTicker(attemptTimeout / 10)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if time.Since(time.Unix(0, p.last.Load())) > attemptTimeout {
				cancel(errStalled)
				return
			}
		}
	}
}

// parseInfo reads a SnapshotInfo off an object; ok is false for objects
// that are not snapshots by the naming rule.
func parseInfo(oi *jetstream.ObjectInfo) (SnapshotInfo, bool) {
	key, seqText, ok := strings.Cut(oi.Name, "/")
	if !ok {
		return SnapshotInfo{}, false
	}
	ntext, ptext, ok := strings.Cut(strings.TrimPrefix(key, "p"), "of")
	if !ok || !strings.HasPrefix(key, "p") {
		return SnapshotInfo{}, false
	}
	n, err1 := strconv.Atoi(ntext)
	p, err2 := strconv.Atoi(ptext)
	seq, err3 := strconv.ParseUint(seqText, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || checkPartition(n, p) != nil || SnapshotName(n, p, seq) != oi.Name {
		return SnapshotInfo{}, false
	}
	token, _ := strconv.ParseUint(oi.Metadata["token"], 10, 64)
	return SnapshotInfo{
		Partition: n, Partitions: p, Seq: seq,
		Host: oi.Metadata["host"], Token: token,
		Size: oi.Size, ModTime: oi.ModTime, Name: oi.Name,
	}, true
}

// List returns partition n of p's snapshots, oldest (lowest Seq) first.
// Like Get and Prune, it retries while the bucket is between leaders,
// until ctx ends.
func (s *SnapshotStore) List(ctx context.Context, n, p int) ([]SnapshotInfo, error) {
	if err := checkPartition(n, p); err != nil {
		return nil, err
	}
	var all []*jetstream.ObjectInfo
	err := retryTransient(ctx, func(ctx context.Context) (err error) {
		all, err = s.os.List(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: list %s: %w", SnapshotsBucket, err)
	}
	var out []SnapshotInfo
	for _, oi := range all {
		if oi.Deleted {
			continue
		}
		if si, ok := parseInfo(oi); ok && si.Partition == n && si.Partitions == p {
			out = append(out, si)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// Newest returns partition n of p's snapshot with the highest Seq, or
// ErrNoSnapshot.
func (s *SnapshotStore) Newest(ctx context.Context, n, p int) (SnapshotInfo, error) {
	all, err := s.List(ctx, n, p)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if len(all) == 0 {
		return SnapshotInfo{}, fmt.Errorf("cluster: partition %d of %d: %w", n, p, ErrNoSnapshot)
	}
	return all[len(all)-1], nil
}

// retryTransient runs f until it succeeds, fails for good, or ctx ends.
// Transient are the failures of a bucket between two leaders (no
// responders, a timeout, a 503), which a takeover right after a node loss
// meets: it retries them rather than give up on a partition.
//
// Each attempt gets its own deadline (attemptTimeout): a request to a
// stream without a leader is dropped, not refused, and would otherwise
// wait out the caller's whole ctx.
func retryTransient(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Transient reports an error of a JetStream request worth retrying: no
// responders, a timeout, a stream between leaders (503), or a bucket being
// created by another host.
func Transient(err error) bool { return transient(err) }

func transient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errNotUpYet) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503)
}

// errNotUpYet marks a bucket that a create or a lookup did not find
// while another host creates it: the create says the bucket's stream
// exists and then fails to read it, or a lookup runs on a node where the
// stream is not up yet (a replicated bucket). Creating or opening is
// tried again.
var errNotUpYet = errors.New("the bucket is being created")

// notUpYet marks a "not found" met while creating or opening a bucket as
// transient (errNotUpYet); other errors pass unchanged.
func notUpYet(err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound) {
		return fmt.Errorf("%w: %w", errNotUpYet, err)
	}
	return err
}

// Get opens a snapshot for reading. The reader streams the chunks and
// checks the digest at the end: a damaged object fails the last Read
// instead of passing for a shorter snapshot. ctx must outlive the reading;
// close the reader when done.
func (s *SnapshotStore) Get(ctx context.Context, info SnapshotInfo) (io.ReadCloser, error) {
	if err := checkPartition(info.Partition, info.Partitions); err != nil {
		return nil, err
	}
	name := SnapshotName(info.Partition, info.Partitions, info.Seq)
	for {
		// The reader lives on the attempt's context, so it cannot have a
		// deadline: a timer cancels it if opening takes too long.
		actx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(attemptTimeout, cancel)
		r, err := s.os.Get(actx, name)
		if timer.Stop() && err == nil {
			return &snapshotReader{ObjectResult: r, cancel: cancel}, nil
		}
		if r != nil {
			r.Close()
		}
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			return nil, fmt.Errorf("cluster: snapshot %s: %w", name, ErrNoSnapshot)
		case err == nil || errors.Is(err, context.Canceled) && ctx.Err() == nil:
			err = fmt.Errorf("opening took over %s", attemptTimeout)
		case !transient(err) || ctx.Err() != nil:
			return nil, fmt.Errorf("cluster: get snapshot %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: get snapshot %s: %w (last: %v)", name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// snapshotReader releases its context when closed.
type snapshotReader struct {
	jetstream.ObjectResult
	cancel context.CancelFunc
}

func (r *snapshotReader) Close() error {
	err := r.ObjectResult.Close()
	r.cancel()
	return err
}

// Prune deletes partition n of p's snapshots but the newest keep (at least
// 1) and returns how many it deleted.
func (s *SnapshotStore) Prune(ctx context.Context, n, p, keep int) (int, error) {
	if keep < 1 {
		return 0, fmt.Errorf("cluster: prune keep %d: want at least 1 (the newest snapshot is what a takeover starts from)", keep)
	}
	all, err := s.List(ctx, n, p)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for len(all)-deleted > keep {
		name := all[deleted].Name
		if err := retryTransient(ctx, func(ctx context.Context) error { return s.os.Delete(ctx, name) }); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return deleted, fmt.Errorf("cluster: prune %s: %w", all[deleted].Name, err)
		}
		deleted++
	}
	return deleted, nil
}
