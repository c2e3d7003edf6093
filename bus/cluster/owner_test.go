package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// span is one host's ownership of one partition, from its confirmed
// acquisition to the instant its lease stopped being valid.
type span struct {
	host       string
	part       int
	token      uint64
	start, end time.Time // end zero: still held
	reason     error
}

// recorder collects every gain and loss of every host, to check that no
// two hosts ever held one partition at the same instant.
type recorder struct {
	mu    sync.Mutex
	spans []*span
	open  map[*Lease]*span
}

func newRecorder() *recorder { return &recorder{open: map[*Lease]*span{}} }

func (r *recorder) hooks(host string) (func(*Lease), func(*Lease, error)) {
	gain := func(l *Lease) {
		r.mu.Lock()
		defer r.mu.Unlock()
		s := &span{host: host, part: l.Partition, token: l.Token, start: l.Acquired}
		r.spans = append(r.spans, s)
		r.open[l] = s
	}
	lose := func(l *Lease, reason error) {
		if l.Valid() {
			panic("OnLose with a valid lease")
		}
		end, why := l.Ended()
		r.mu.Lock()
		defer r.mu.Unlock()
		s := r.open[l]
		s.end, s.reason = end, why
		if why != reason {
			panic(fmt.Sprintf("OnLose reason %v, lease says %v", reason, why))
		}
		delete(r.open, l)
	}
	return gain, lose
}

// check fails the test if two spans of one partition overlap, or if a
// later owner's fencing token is not larger than an earlier one's.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	byPart := map[int][]*span{}
	for _, s := range r.spans {
		byPart[s.part] = append(byPart[s.part], s)
	}
	for p, ss := range byPart {
		sort.Slice(ss, func(i, j int) bool { return ss[i].start.Before(ss[j].start) })
		for i := 1; i < len(ss); i++ {
			prev, cur := ss[i-1], ss[i]
			if prev.end.IsZero() || !prev.end.Before(cur.start) {
				t.Errorf("partition %d: %s (token %d) held until %v, %s (token %d) gained it at %v",
					p, prev.host, prev.token, prev.end, cur.host, cur.token, cur.start)
			}
			if cur.token <= prev.token {
				t.Errorf("partition %d: token %d after %d", p, cur.token, prev.token)
			}
		}
	}
}

// lastGap is the time between partition p's previous owner's end and the
// current owner's start.
func (r *recorder) handovers(from string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, s := range r.spans {
		if s.host != from || s.end.IsZero() {
			continue
		}
		for _, n := range r.spans {
			if n.part == s.part && n.host != from && n.start.After(s.end) {
				out = append(out, n.start.Sub(s.end))
				break
			}
		}
	}
	return out
}

// testWriter sends an Owner's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type testHost struct {
	id string
	nc *nats.Conn
	o  *Owner
}

func joinHost(t *testing.T, c *clustertest.Cluster, rec *recorder, id string, parts int, lease time.Duration, nc *nats.Conn) *testHost {
	t.Helper()
	if nc == nil {
		nc = c.Connect(t)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	gain, lose := rec.hooks(id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := Join(ctx, js, Options{
		HostID: id, Partitions: parts, Lease: lease, Replicas: 3,
		OnGain: gain, OnLose: lose,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	h := &testHost{id: id, nc: nc, o: o}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o.Close(ctx)
	})
	return h
}

// waitShares waits until the hosts own exactly want[i] partitions each,
// all disjoint and covering 0..parts-1, and returns how long that took.
func waitShares(t *testing.T, hosts []*testHost, want []int, parts int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		var got []int
		seen := map[int]bool{}
		ok := true
		for i, h := range hosts {
			owned := h.o.Owned()
			got = append(got, len(owned))
			if len(owned) != want[i] {
				ok = false
			}
			for _, p := range owned {
				if seen[p] {
					t.Fatalf("partition %d owned twice (shares %v)", p, got)
				}
				seen[p] = true
			}
		}
		if ok && len(seen) == parts {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("shares %v after %s, want %v", got, timeout, want)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestOwnersShareKillRejoinLeave: 3 hosts share P = 12 as 4+4+4; a host
// whose connection dies (a SIGKILLed host, as NATS sees it) fences itself
// and the others take its partitions within the bound; it comes back and
// shares rebalance; it leaves gracefully and the others take over at once.
// At no instant do two hosts own one partition.
func TestOwnersShareKillRejoinLeave(t *testing.T) {
	t.Parallel()
	const parts, lease = 12, 2 * time.Second
	c := clustertest.Start(t, clustertest.Options{})
	rec := newRecorder()
	a := joinHost(t, c, rec, "a", parts, lease, nil)
	b := joinHost(t, c, rec, "b", parts, lease, nil)
	cc := joinHost(t, c, rec, "c", parts, lease, nil)
	waitShares(t, []*testHost{a, b, cc}, []int{4, 4, 4}, parts, 30*time.Second)

	// Kill c: its connection goes away without a word.
	cc.nc.Close()
	took := waitShares(t, []*testHost{a, b}, []int{6, 6}, parts, 4*lease+5*time.Second)
	t.Logf("takeover after kill: %s (lease %s)", took, lease)
	if got := cc.o.Owned(); len(got) != 0 {
		t.Fatalf("the dead host still believes it owns %v", got)
	}
	for _, d := range rec.handovers("c") {
		if d <= 0 {
			t.Fatalf("handover gap %s", d)
		}
		t.Logf("c's partition free→taken gap: %s", d)
	}

	// c comes back (a new process: new connection, new incarnation).
	cc2 := joinHost(t, c, rec, "c", parts, lease, nil)
	took = waitShares(t, []*testHost{a, b, cc2}, []int{4, 4, 4}, parts, 30*time.Second)
	t.Logf("rebalance after rejoin: %s", took)

	// b leaves gracefully: its partitions are released, not left to expire.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	took = waitShares(t, []*testHost{a, cc2}, []int{6, 6}, parts, lease)
	t.Logf("takeover after graceful leave: %s", took)
	rec.check(t)
}

// TestFencingWhenCutOff freezes the NATS node that a host is connected to
// (the KV bucket's leader, so the leader moves too): the host cannot renew
// and must stop believing it owns its partitions before the other host can
// create their keys. After the node thaws, the host rejoins its share.
func TestFencingWhenCutOff(t *testing.T) {
	t.Parallel()
	const parts, lease = 4, 2 * time.Second
	c := clustertest.Start(t, clustertest.Options{})
	rec := newRecorder()
	nc := c.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := ownersBucket(ctx, js, Options{Replicas: 3, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(ctx, js, "KV_"+OwnersBucket)
	if leader < 0 {
		t.Fatal("owners bucket has no leader")
	}
	// b talks to another node, a only to the bucket's leader.
	b := joinHost(t, c, rec, "b", parts, lease, c.ConnectNode(t, (leader+1)%c.Size()))
	a := joinHost(t, c, rec, "a", parts, lease, c.ConnectNode(t, leader))
	waitShares(t, []*testHost{a, b}, []int{2, 2}, parts, 30*time.Second)

	c.Pause(leader)
	start := time.Now()
	took := waitShares(t, []*testHost{a, b}, []int{0, 4}, parts, 60*time.Second)
	t.Logf("takeover from a host cut off with the KV leader: %s (lease %s)", took, lease)
	for _, d := range rec.handovers("a") {
		t.Logf("a's partition free→taken gap: %s", d)
	}
	rec.mu.Lock()
	for _, s := range rec.spans {
		if s.host == "a" && !s.end.IsZero() {
			if s.reason != ErrExpired {
				t.Errorf("a lost p%d with %v, want ErrExpired", s.part, s.reason)
			}
			if s.end.Sub(start) > lease {
				t.Errorf("a believed it owned p%d until %s after the cut, longer than the lease", s.part, s.end.Sub(start))
			}
		}
	}
	rec.mu.Unlock()

	c.Resume(leader)
	waitShares(t, []*testHost{a, b}, []int{2, 2}, parts, 60*time.Second)
	rec.check(t)
}

// TestLeaseFencesOnTheClock checks the lease arithmetic on an injected
// clock: valid until sent+ttl-guard exactly, never shortened by a renewal,
// and an end after the deadline is dated at the deadline.
func TestLeaseFencesOnTheClock(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	l := newLease("p0of1", 0, 1, 7, now, 10*time.Second, 2*time.Second, clock)
	now = now.Add(8*time.Second - time.Nanosecond)
	if !l.Valid() {
		t.Fatal("invalid before sent+ttl-guard")
	}
	now = now.Add(time.Nanosecond)
	if l.Valid() {
		t.Fatal("valid at sent+ttl-guard")
	}
	l.renewed(9, time.Unix(999, 0), 2*time.Second) // an older send
	if got := l.Deadline(); !got.Equal(time.Unix(1008, 0)) {
		t.Fatalf("renewal shortened the lease to %v", got)
	}
	now = time.Unix(1020, 0)
	if !l.end(ErrExpired) {
		t.Fatal("end: not ended")
	}
	if at, why := l.Ended(); !at.Equal(time.Unix(1008, 0)) || why != ErrExpired {
		t.Fatalf("ended %v %v, want at the deadline with ErrExpired", at, why)
	}
	if l.end(ErrReleased) {
		t.Fatal("ended twice")
	}
}

func TestShare(t *testing.T) {
	t.Parallel()
	hosts := []string{"c", "a", "b"}
	for _, tc := range []struct {
		p    int
		want []int // for a, b, c
	}{{12, []int{4, 4, 4}}, {10, []int{4, 3, 3}}, {2, []int{1, 1, 0}}, {1, []int{1, 0, 0}}} {
		sum := 0
		for i, h := range []string{"a", "b", "c"} {
			got := Share(tc.p, hosts, h)
			if got != tc.want[i] {
				t.Errorf("Share(%d, %s) = %d, want %d", tc.p, h, got, tc.want[i])
			}
			sum += got
		}
		if sum != tc.p {
			t.Errorf("P=%d: shares sum to %d", tc.p, sum)
		}
	}
	if Share(4, hosts, "z") != 0 {
		t.Error("a host not in the list has a share")
	}
}

func TestJoinRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{HostID: "a.b", Partitions: 1}, "host id"},
		{Options{HostID: "a", Partitions: 0}, "partitions 0"},
		{Options{HostID: "a", Partitions: 257}, "partitions 257"},
		{Options{HostID: "a", Partitions: 1, Lease: 1500 * time.Millisecond}, "whole number of seconds"},
		{Options{HostID: "a", Partitions: 1, Lease: 3 * time.Second, Guard: 2 * time.Second}, "guard"},
	} {
		_, err := Join(context.Background(), nil, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Join(%+v) = %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}

// TestOwnersSurviveLeaderNodeKill SIGKILLs the NATS node leading the
// owners bucket under 3 hosts: leases may lapse while the survivors elect
// a new leader, but the shares come back, and at no instant do two hosts
// own one partition. The node then restarts and catches up.
func TestOwnersSurviveLeaderNodeKill(t *testing.T) {
	t.Parallel()
	const parts, lease = 6, 2 * time.Second
	c := clustertest.Start(t, clustertest.Options{})
	rec := newRecorder()
	hosts := []*testHost{
		joinHost(t, c, rec, "a", parts, lease, nil),
		joinHost(t, c, rec, "b", parts, lease, nil),
		joinHost(t, c, rec, "c", parts, lease, nil),
	}
	waitShares(t, hosts, []int{2, 2, 2}, parts, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, _ := jetstream.New(c.Connect(t))
	leader := c.StreamLeader(ctx, js, "KV_"+OwnersBucket)
	if leader < 0 {
		t.Fatal("owners bucket has no leader")
	}
	killed := time.Now()
	c.Kill(leader)
	// Wait for the survivors' new leader, then for every lease to be
	// renewed (or taken anew) under it: a deadline later than
	// elected+lease-guard was sent after the election.
	kv, err := jetstream.New(c.ConnectNode(t, (leader+1)%c.Size()))
	if err != nil {
		t.Fatal(err)
	}
	for c.StreamLeader(ctx, kv, "KV_"+OwnersBucket) < 0 || c.StreamLeader(ctx, kv, "KV_"+OwnersBucket) == leader {
		if ctx.Err() != nil {
			t.Fatal("no new leader for the owners bucket")
		}
	}
	elected := time.Now()
	deadline := elected.Add(60 * time.Second)
	for {
		waitShares(t, hosts, []int{2, 2, 2}, parts, 60*time.Second)
		renewed := 0
		for _, h := range hosts {
			for _, n := range h.o.Owned() {
				if l, ok := h.o.Lease(n); ok && l.Deadline().After(elected.Add(lease-lease/4)) {
					renewed++
				}
			}
		}
		if renewed == parts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d leases renewed under the new leader", renewed, parts)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	t.Logf("new leader %s after the kill; shares whole and renewed under it %s later", elected.Sub(killed), time.Since(elected))
	c.Restart(leader)
	waitShares(t, hosts, []int{2, 2, 2}, parts, 60*time.Second)
	rec.check(t)
}

// TestJoinAtOnceOnAFreshCluster: hosts joining at the same instant on a
// fresh 3-node cluster, each on another node, all join. While one creates
// the R3 bucket, another's create says it exists and its lookup, on a
// node where the bucket's stream is not up yet, says "stream not found":
// that is transient, not a reason to give up (a segd host exited at start
// with "cluster: bucket SEGD_OWNERS: ... stream not found").
func TestJoinAtOnceOnAFreshCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	t.Parallel()
	c := clustertest.Start(t, clustertest.Options{})
	const hosts = 30
	errs := make(chan error, hosts)
	var owners []*Owner
	var mu sync.Mutex
	start := make(chan struct{})
	for i := range hosts {
		nc := c.ConnectNode(t, i%c.Size())
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o, err := Join(ctx, js, Options{HostID: fmt.Sprintf("h%d", i), Partitions: 12, Lease: 2 * time.Second, Replicas: 3})
			if err == nil {
				mu.Lock()
				owners = append(owners, o)
				mu.Unlock()
			}
			errs <- err
		}()
	}
	close(start)
	for range hosts {
		if err := <-errs; err != nil {
			t.Errorf("join: %v", err)
		}
	}
	for _, o := range owners {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = o.Close(ctx)
		cancel()
	}
}

// TestJoiningHostTakesAShare: with P = 4 held 2+2, no host holds more
// than the most any share is (ceil(4/3) = 2), yet a third host joining
// must get its share: the host sorting last among the fullest gives one
// back, and the shares end 2+1+1 as Share says.
func TestJoiningHostTakesAShare(t *testing.T) {
	t.Parallel()
	const parts, lease = 4, 2 * time.Second
	c := clustertest.Start(t, clustertest.Options{})
	rec := newRecorder()
	a := joinHost(t, c, rec, "a", parts, lease, nil)
	b := joinHost(t, c, rec, "b", parts, lease, nil)
	waitShares(t, []*testHost{a, b}, []int{2, 2}, parts, 30*time.Second)
	rec.mu.Lock()
	before := len(rec.spans)
	rec.mu.Unlock()
	cc := joinHost(t, c, rec, "c", parts, lease, nil)
	took := waitShares(t, []*testHost{a, b, cc}, []int{2, 1, 1}, parts, 30*time.Second)
	t.Logf("a joining host took its share in %s (%.2f leases)", took, took.Seconds()/lease.Seconds())
	rec.check(t)
	// One partition moved, no more (a view lagging behind a release
	// moves nothing else).
	rec.mu.Lock()
	after := len(rec.spans)
	rec.mu.Unlock()
	if after != before+1 {
		t.Errorf("%d ownership periods began when c joined; want 1 (c's)", after-before)
	}
}
