package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// OwnersBucket is the KV bucket holding the partition leases (keys
// p<N>of<P>) and the live hosts (keys h.<host id>).
const OwnersBucket = "SEGD_OWNERS"

// Limits of Options.
const (
	// MaxPartitions is the largest P (docs/operations.md).
	MaxPartitions = 256
	// MinLease is the shortest lease: the server keeps per-key TTLs in
	// whole seconds and truncates anything finer.
	MinLease = time.Second
	// DefaultLease is the lease when Options.Lease is zero.
	DefaultLease = 10 * time.Second
)

// hostIDPattern keeps host ids usable as one KV key token.
var hostIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Options configures Join.
type Options struct {
	// HostID names this host among the others (1-64 of A-Z a-z 0-9 _ -).
	// Two live processes must not share one: Join waits for a previous
	// incarnation's key to expire and fails if it does not.
	HostID string
	// Partitions is P, 1..MaxPartitions, the same on every host.
	Partitions int
	// Lease is how long a lease lasts without renewal: a whole number of
	// seconds, at least MinLease (default DefaultLease). A dead host's
	// partitions are taken over within about Lease + 1s; renewals are sent
	// every Lease/3.
	Lease time.Duration
	// Guard is how long before the server-side expiry a host stops
	// believing it owns a partition (default Lease/4). It must exceed the
	// clock-rate drift over a lease, the clock skew between NATS servers
	// and a writer's delay between checking Lease.Valid and writing.
	Guard time.Duration
	// Replicas of the bucket when this host creates it (default 1; use 3
	// on a 3-node cluster so that a lost node loses no lease).
	Replicas int
	// Now is the clock leases are measured with (default time.Now).
	Now func() time.Time
	// OnGain is called when this host acquires a partition; the host
	// starts that partition's writer. Calls for one partition never
	// overlap: OnLose of a lease comes after its OnGain returned.
	OnGain func(*Lease)
	// OnLose is called when a lease ends, with ErrReleased, ErrExpired or
	// ErrTaken; the lease is no longer Valid. For ErrReleased the key is
	// deleted only after OnLose returns, so the host can finish (flush a
	// snapshot) before another host takes over.
	OnLose func(*Lease, error)
	// Logger receives lease changes and renewal failures (nil: discard).
	Logger *slog.Logger
}

// holderValue is what a key holds: who and which incarnation of it.
type holderValue struct {
	Host string `json:"host"`
	Inc  string `json:"inc"`
}

// Holder is a key's holder as the watch last saw it.
type Holder struct {
	Host     string
	Revision uint64
	// Seen is when the watch delivered this revision (Options.Now).
	Seen time.Time
}

// Owner holds this host's share of the partitions; see Join.
type Owner struct {
	opts  Options
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	inc   string
	val   []byte
	log   *slog.Logger
	watch jetstream.KeyWatcher

	quit     chan struct{} // closed by Close: the controller stops
	poke     chan struct{} // wakes the controller
	ctlDone  chan struct{}
	closeOne sync.Once

	mu        sync.Mutex
	held      map[int]*Lease
	self      *Lease
	view      map[string]Holder
	lastEvent time.Time // when the watch last delivered anything
}

// PartitionKey is partition n of p's key in OwnersBucket.
func PartitionKey(n, p int) string { return "p" + strconv.Itoa(n) + "of" + strconv.Itoa(p) }

func hostKey(id string) string { return "h." + id }

// Join creates the owners bucket if needed, registers the host and starts
// acquiring its fair share of the partitions in the background: with H
// live hosts sorted by id, the first P mod H hold ceil(P/H) partitions and
// the others floor(P/H); a host above its share releases the surplus, one
// below it acquires free partitions. ctx bounds only the joining.
func Join(ctx context.Context, js jetstream.JetStream, opts Options) (*Owner, error) {
	if !hostIDPattern.MatchString(opts.HostID) {
		return nil, fmt.Errorf("cluster: host id %q: want 1-64 of A-Z a-z 0-9 _ -", opts.HostID)
	}
	if opts.Partitions < 1 || opts.Partitions > MaxPartitions {
		return nil, fmt.Errorf("cluster: partitions %d: want 1..%d", opts.Partitions, MaxPartitions)
	}
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.Lease < MinLease || opts.Lease%time.Second != 0 {
		return nil, fmt.Errorf("cluster: lease %s: want a whole number of seconds, at least %s (the server keeps key TTLs in seconds)", opts.Lease, MinLease)
	}
	if opts.Guard == 0 {
		opts.Guard = opts.Lease / 4
	}
	if opts.Guard <= 0 || opts.Guard >= opts.Lease*2/3 {
		return nil, fmt.Errorf("cluster: guard %s: want more than 0 and less than 2/3 of the lease %s (renewals go every lease/3)", opts.Guard, opts.Lease)
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnGain == nil {
		opts.OnGain = func(*Lease) {}
	}
	if opts.OnLose == nil {
		opts.OnLose = func(*Lease, error) {}
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	kv, err := ownersBucket(ctx, js, opts)
	if err != nil {
		return nil, err
	}
	o := &Owner{
		opts: opts, js: js, kv: kv, inc: nuid.Next(),
		log:  lg.With("host", opts.HostID),
		quit: make(chan struct{}), poke: make(chan struct{}, 1), ctlDone: make(chan struct{}),
		held: map[int]*Lease{}, view: map[string]Holder{},
	}
	o.val, _ = json.Marshal(holderValue{Host: opts.HostID, Inc: o.inc})

	// The watch first, so that nothing between it and the acquisitions is
	// missed.
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("cluster: watch %s: %w", OwnersBucket, err)
	}
	o.watch = w
	o.lastEvent = opts.Now()
	if err := o.initialView(ctx); err != nil {
		w.Stop()
		return nil, err
	}
	if err := o.joinHost(ctx); err != nil {
		w.Stop()
		return nil, err
	}
	go o.control()
	return o, nil
}

// ownersBucket opens or creates the bucket; it must keep limit markers,
// without which an expired key is not announced and per-key TTLs are off.
func ownersBucket(ctx context.Context, js jetstream.JetStream, opts Options) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	var st jetstream.KeyValueStatus
	err := retryTransient(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         OwnersBucket,
			Description:    "segd partition leases (p<N>of<P>) and live hosts (h.<id>)",
			History:        1,
			Replicas:       opts.Replicas,
			LimitMarkerTTL: opts.Lease,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, OwnersBucket)
		}
		if err == nil {
			st, err = kv.Status(ctx)
		}
		return notUpYet(err)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %s: %w", OwnersBucket, err)
	}
	if s, ok := st.(*jetstream.KeyValueBucketStatus); ok && s.LimitMarkerTTL() == 0 {
		return nil, fmt.Errorf("cluster: bucket %s exists without limit markers (per-key TTL); delete it so segd can recreate it", OwnersBucket)
	}
	return kv, nil
}

// initialView reads the watch until it has delivered the current values.
func (o *Owner) initialView(ctx context.Context) error {
	for {
		select {
		case e, ok := <-o.watch.Updates():
			if !ok {
				return fmt.Errorf("cluster: watch %s stopped", OwnersBucket)
			}
			if e == nil {
				return nil
			}
			o.apply(e)
		case <-ctx.Done():
			return fmt.Errorf("cluster: read %s: %w", OwnersBucket, ctx.Err())
		}
	}
}

func (o *Owner) apply(e jetstream.KeyValueEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastEvent = o.opts.Now()
	if e.Operation() != jetstream.KeyValuePut {
		delete(o.view, e.Key())
		return
	}
	var v holderValue
	if json.Unmarshal(e.Value(), &v) != nil {
		v.Host = "?"
	}
	o.view[e.Key()] = Holder{Host: v.Host, Revision: e.Revision(), Seen: o.lastEvent}
}

// joinHost creates the host's membership key, waiting (until ctx ends) for
// a previous incarnation's key to expire.
func (o *Owner) joinHost(ctx context.Context) error {
	for {
		l, err := o.create(ctx, hostKey(o.opts.HostID), -1)
		if err == nil {
			o.mu.Lock()
			o.self = l
			o.mu.Unlock()
			close(l.gained)
			go o.keep(l)
			return nil
		}
		inUse := errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err)
		if !inUse && !transient(err) {
			return fmt.Errorf("cluster: join as %q: %w", o.opts.HostID, err)
		}
		select {
		case <-ctx.Done():
			if !inUse {
				return fmt.Errorf("cluster: join as %q: %w", o.opts.HostID, err)
			}
			return fmt.Errorf("cluster: host id %q is held by another live process (or its previous run, whose key expires within %s): %w", o.opts.HostID, o.opts.Lease, ctx.Err())
		case <-time.After(o.retry()):
		}
	}
}

// retry is the pause between failed attempts.
func (o *Owner) retry() time.Duration { return max(o.opts.Lease/10, 100*time.Millisecond) }

// create acquires key (Partition part, -1 for the host key).
func (o *Owner) create(ctx context.Context, key string, part int) (*Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, o.opts.Lease/3)
	defer cancel()
	sent := o.opts.Now()
	rev, err := o.kv.Create(ctx, key, o.val, jetstream.KeyTTL(o.opts.Lease))
	if err != nil {
		return nil, err
	}
	return newLease(key, part, o.opts.Partitions, rev, sent, o.opts.Lease, o.opts.Guard, o.opts.Now), nil
}

// control is the rebalancing loop: it follows the watch and, on every
// change and every Lease/3, moves this host towards its share.
func (o *Owner) control() {
	defer close(o.ctlDone)
	tick := time.NewTicker(o.opts.Lease / 3)
	defer tick.Stop()
	for {
		o.rebalance()
		select {
		case <-o.quit:
			return
		case e, ok := <-o.updates():
			if !ok {
				return
			}
			if e != nil {
				o.apply(e)
			}
		case <-o.poke:
		case <-tick.C:
			o.checkWatch()
		}
	}
}

// checkWatch restarts the watch if it has gone quiet for longer than a
// lease: this host's own membership key is rewritten every Lease/3, so a
// healthy watch is never quiet that long. (The watch's consumer lives on
// the bucket's leader; if that node dies and the consumer cannot be
// recreated at once, the client may give up on it.)
func (o *Owner) checkWatch() {
	o.mu.Lock()
	quiet := o.opts.Now().Sub(o.lastEvent)
	o.mu.Unlock()
	if quiet <= o.opts.Lease {
		return
	}
	w, err := o.kv.WatchAll(context.Background())
	if err != nil {
		o.log.Warn("watch quiet, restart failed", "quiet", quiet, "err", err)
		return
	}
	o.log.Warn("watch quiet, restarted", "quiet", quiet)
	o.watch.Stop()
	o.mu.Lock()
	o.watch = w
	// The new watch replays every current value, then follows; until it
	// has, a key missing from the view is only tried, never assumed.
	o.view = map[string]Holder{}
	o.lastEvent = o.opts.Now()
	o.mu.Unlock()
}

func (o *Owner) updates() <-chan jetstream.KeyValueEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.watch.Updates()
}

func (o *Owner) wake() {
	select {
	case o.poke <- struct{}{}:
	default:
	}
}

// Share is the number of partitions a host should hold: with hosts
// sorted, the first P mod H hold one more than the rest.
func Share(partitions int, hosts []string, host string) int {
	sorted := append([]string(nil), hosts...)
	sort.Strings(sorted)
	i := sort.SearchStrings(sorted, host)
	if i == len(sorted) || sorted[i] != host {
		return 0
	}
	n := partitions / len(sorted)
	if i < partitions%len(sorted) {
		n++
	}
	return n
}

// Hosts lists the live hosts as the watch last saw them (this one always
// included).
func (o *Owner) Hosts() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hostsLocked()
}

func (o *Owner) hostsLocked() []string {
	hosts := []string{o.opts.HostID}
	for k := range o.view {
		if id, ok := strings.CutPrefix(k, "h."); ok && id != o.opts.HostID {
			hosts = append(hosts, id)
		}
	}
	sort.Strings(hosts)
	return hosts
}

// Holder says which host holds partition n, as the watch last saw it.
func (o *Owner) Holder(n int) (Holder, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h, ok := o.view[PartitionKey(n, o.opts.Partitions)]
	return h, ok
}

// Owned lists the partitions this host holds valid leases on.
func (o *Owner) Owned() []int {
	o.mu.Lock()
	var ls []*Lease
	for _, l := range o.held {
		ls = append(ls, l)
	}
	o.mu.Unlock()
	var ps []int
	for _, l := range ls {
		if l.Valid() {
			ps = append(ps, l.Partition)
		}
	}
	sort.Ints(ps)
	return ps
}

// Lease returns this host's lease on partition n, if it holds one.
func (o *Owner) Lease(n int) (*Lease, bool) {
	o.mu.Lock()
	l, ok := o.held[n]
	o.mu.Unlock()
	return l, ok && l.Valid()
}

// score ranks partition n for host (rendezvous hashing), so hosts prefer
// different free partitions and rarely race for the same key.
func score(host string, n int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(host))
	h.Write([]byte{'/'})
	h.Write([]byte(strconv.Itoa(n)))
	return h.Sum64()
}

func (o *Owner) rebalance() {
	o.mu.Lock()
	selfGone := o.self == nil
	if !selfGone {
		select {
		case <-o.self.done:
			selfGone = true
		default:
		}
	}
	o.mu.Unlock()
	if selfGone {
		// Our membership key lapsed (NATS was unreachable): take it again,
		// or others count one host too few.
		ctx, cancel := context.WithTimeout(context.Background(), o.opts.Lease/3)
		l, err := o.create(ctx, hostKey(o.opts.HostID), -1)
		cancel()
		if err != nil {
			return
		}
		o.mu.Lock()
		o.self = l
		o.mu.Unlock()
		close(l.gained)
		go o.keep(l)
	}

	o.mu.Lock()
	target := Share(o.opts.Partitions, o.hostsLocked(), o.opts.HostID)
	var held []*Lease
	for _, l := range o.held {
		held = append(held, l)
	}
	// Free: no key, or a key not rewritten for longer than a lease and
	// the server's expiry tick (its holder is gone and the expiry marker
	// has not reached us). Trying to create a key that is in fact held is
	// harmless: the server refuses.
	stale := o.opts.Now().Add(-o.opts.Lease - 2*time.Second)
	var free []int
	for n := 0; n < o.opts.Partitions; n++ {
		if _, mine := o.held[n]; mine {
			continue
		}
		if h, taken := o.view[PartitionKey(n, o.opts.Partitions)]; !taken || h.Seen.Before(stale) {
			free = append(free, n)
		}
	}

	// A host gives partitions back only past the most any host's share
	// is (ceil(P/H)), not past its own: with P mod H > 0 the shares differ
	// by one, and moving a partition only because another host sorts
	// first would hand it back and forth (a single lease, P = 1, between
	// two hosts, each hand-over a pause of that partition).
	live := o.hostsLocked()
	hosts := len(live)
	yield := len(free) == 0 && o.yieldsLocked(live, len(held))
	o.mu.Unlock()
	most := (o.opts.Partitions + hosts - 1) / hosts
	switch {
	case len(held) > most:
		// Give back the ones this host prefers least.
		sort.Slice(held, func(i, j int) bool {
			return score(o.opts.HostID, held[i].Partition) < score(o.opts.HostID, held[j].Partition)
		})
		for _, l := range held[:len(held)-most] {
			o.Release(l)
		}
	case yield && len(held) > 0:
		// Every partition is held and none past the most, but a host
		// holds two fewer than this one (a host joined): give it one.
		sort.Slice(held, func(i, j int) bool {
			return score(o.opts.HostID, held[i].Partition) < score(o.opts.HostID, held[j].Partition)
		})
		o.Release(held[0])
	case len(held) < target:
		sort.Slice(free, func(i, j int) bool {
			return score(o.opts.HostID, free[i]) > score(o.opts.HostID, free[j])
		})
		need := target - len(held)
		for _, n := range free {
			if need == 0 {
				return
			}
			select {
			case <-o.quit:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.opts.Lease/3)
			l, err := o.create(ctx, PartitionKey(n, o.opts.Partitions), n)
			cancel()
			if err != nil {
				if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err) {
					// Another host was quicker. (Create over a deleted key
					// reports the race as a bare wrong-last-sequence.)
					continue
				}
				// NATS trouble: try again on the next round rather than
				// spend a timeout on every free partition.
				o.log.Warn("acquire failed", "partition", n, "err", err)
				return
			}
			o.mu.Lock()
			o.held[n] = l
			o.mu.Unlock()
			go o.keep(l)
			o.log.Info("partition gained", "partition", n, "token", l.Token)
			o.opts.OnGain(l)
			close(l.gained)
			need--
		}
	}
}

// yieldsLocked reports whether this host, holding mine partitions,
// should give one back so that the live hosts' counts (as the watch saw
// them) differ by at most one: some host holds at least two fewer, and
// this host is the one sorting last among those holding the most (the
// shares, Share, are non-increasing in host order, so it is the one whose
// share is smallest). A difference of one never moves a partition: a
// single lease (P = 1) stays where it is when another host joins.
func (o *Owner) yieldsLocked(live []string, mine int) bool {
	counts := make(map[string]int, len(live))
	for _, h := range live {
		counts[h] = 0
	}
	for n := 0; n < o.opts.Partitions; n++ {
		if h, ok := o.view[PartitionKey(n, o.opts.Partitions)]; ok && h.Host != o.opts.HostID {
			if _, isLive := counts[h.Host]; isLive {
				counts[h.Host]++
			}
		}
	}
	counts[o.opts.HostID] = mine
	least, most, sum := mine, mine, 0
	for _, c := range counts {
		least, most, sum = min(least, c), max(most, c), sum+c
	}
	// Only on a settled view: every partition held by one live host (a
	// key this host released is still seen under its name for a moment,
	// and another host's acquisition may not be seen yet).
	if sum != o.opts.Partitions || mine != most || most-least < 2 {
		return false
	}
	last := ""
	for _, h := range live { // sorted
		if counts[h] == most {
			last = h
		}
	}
	return last == o.opts.HostID
}

// Release gives a lease back: the lease turns invalid, OnLose runs, then
// the key is deleted so another host can take it at once. It returns when
// the lease has ended. Rebalancing may acquire the partition again if
// this host is below its share; Release is for moving partitions by hand
// and for tests.
func (o *Owner) Release(l *Lease) {
	select {
	case <-l.release:
	default:
		close(l.release)
	}
	<-l.done
}

// keep renews l every Lease/3 until it is released, taken or expires.
func (o *Owner) keep(l *Lease) {
	defer close(l.stopped)
	every := o.opts.Lease / 3
	next := o.opts.Now().Add(every)
	for {
		wait := min(next.Sub(o.opts.Now()), l.Deadline().Sub(o.opts.Now()))
		t := time.NewTimer(max(wait, 0))
		select {
		case <-l.release:
			t.Stop()
			o.finish(l, ErrReleased, true)
			return
		case <-t.C:
		}
		if !l.Valid() {
			o.finish(l, ErrExpired, false)
			return
		}
		sent := o.opts.Now()
		ctx, cancel := context.WithTimeout(context.Background(), min(every, l.Deadline().Sub(sent)))
		rev, err := o.renew(ctx, l)
		cancel()
		switch {
		case err == nil:
			l.renewed(rev, sent, o.opts.Guard)
			next = sent.Add(every)
		case isWrongLastSeq(err):
			// Either a renewal whose reply we lost went through, or the key
			// is someone else's now. Only the first keeps the lease.
			ctx, cancel := context.WithTimeout(context.Background(), every)
			e, gerr := o.kv.Get(ctx, l.key)
			cancel()
			var v holderValue
			if gerr == nil && json.Unmarshal(e.Value(), &v) == nil && v.Inc == o.inc {
				l.mu.Lock()
				l.rev = e.Revision()
				l.mu.Unlock()
				next = o.opts.Now()
				continue
			}
			if gerr != nil && !errors.Is(gerr, jetstream.ErrKeyNotFound) {
				next = o.opts.Now().Add(o.retry())
				continue
			}
			o.finish(l, ErrTaken, false)
			return
		default:
			o.log.Warn("renew failed", "key", l.key, "err", err, "valid_for", l.Deadline().Sub(o.opts.Now()))
			next = o.opts.Now().Add(o.retry())
		}
	}
}

// renew rewrites l's key if it is still at l's revision, with a fresh TTL.
// (KeyValue.Update would drop the per-key TTL.)
func (o *Owner) renew(ctx context.Context, l *Lease) (uint64, error) {
	msg := &nats.Msg{Subject: "$KV." + OwnersBucket + "." + l.key, Data: o.val}
	ack, err := o.js.PublishMsg(ctx, msg,
		jetstream.WithExpectLastSequencePerSubject(l.revision()),
		jetstream.WithMsgTTL(o.opts.Lease))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// finish ends l: it turns invalid, OnLose runs (after OnGain returned),
// the key is deleted if asked and still ours, and the controller is woken.
func (o *Owner) finish(l *Lease, reason error, del bool) {
	l.end(reason)
	<-l.gained
	if l.Partition >= 0 {
		o.log.Info("partition lost", "partition", l.Partition, "token", l.Token, "reason", reason)
		o.opts.OnLose(l, reason)
	}
	if del {
		ctx, cancel := context.WithTimeout(context.Background(), o.opts.Lease/3)
		if err := o.kv.Delete(ctx, l.key, jetstream.LastRevision(l.revision())); err != nil {
			o.log.Warn("release: delete failed; the key expires instead", "key", l.key, "err", err)
		}
		cancel()
	}
	o.mu.Lock()
	if l.Partition >= 0 && o.held[l.Partition] == l {
		delete(o.held, l.Partition)
	}
	o.mu.Unlock()
	close(l.done)
	o.wake()
}

// Close releases every partition (OnLose runs for each), then the host's
// membership key, and stops. Partitions it cannot release (NATS gone)
// expire on their own. ctx bounds the wait.
func (o *Owner) Close(ctx context.Context) error {
	o.closeOne.Do(func() { close(o.quit) })
	select {
	case <-o.ctlDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	o.mu.Lock()
	var ls []*Lease
	for _, l := range o.held {
		ls = append(ls, l)
	}
	if o.self != nil {
		ls = append(ls, o.self)
	}
	o.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, l := range ls {
			o.Release(l)
		}
		close(done)
	}()
	defer o.watch.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
