package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
)

// multiHosts is a NATS server with JetStream and the segd hosts that
// share a stream's partitions over it, each in this process but
// connected by URL, as separate machines would be.
type multiHosts struct {
	t     *testing.T
	url   string
	rules string
	clock *engine.ManualClock
	p     int
	mu    sync.Mutex
	hosts map[string]*testServer
}

func newMultiHosts(t *testing.T, p int, now time.Time) *multiHosts {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(partitionRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return &multiHosts{t: t, url: ns.ClientURL(), rules: rulesFile, clock: engine.NewManualClock(now), p: p, hosts: map[string]*testServer{}}
}

// start starts host id.
func (m *multiHosts) start(id string) *testServer {
	m.t.Helper()
	ts := startServer(m.t, Config{NATSURL: m.url, DataDir: m.t.TempDir(), RulePaths: []string{m.rules}, Clock: m.clock,
		Partitions: m.p, HostID: id, Lease: 2 * time.Second, SnapshotInterval: -1,
		Logger: slog.New(slog.NewTextHandler(m.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", id)})
	m.mu.Lock()
	m.hosts[id] = ts
	m.mu.Unlock()
	return ts
}

// stop closes host id (SIGTERM: it hands its partitions over).
func (m *multiHosts) stop(id string) time.Duration {
	m.mu.Lock()
	ts := m.hosts[id]
	delete(m.hosts, id)
	m.mu.Unlock()
	t0 := time.Now()
	ts.close()
	return time.Since(t0)
}

// owned is every live host's partitions; it fails the test if two hosts
// run one partition at once.
func (m *multiHosts) owned() map[string][]int {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]int{}
	by := map[int]string{}
	for id, ts := range m.hosts {
		out[id] = ts.srv.Owned()
		for _, n := range out[id] {
			if other, dup := by[n]; dup {
				m.t.Fatalf("partition %d runs on %s and %s at once", n, other, id)
			}
			by[n] = id
		}
	}
	return out
}

// starting counts the partitions starting on the hosts (gained starts
// them in the background; Owned lists one from the middle of its start).
func (m *multiHosts) starting() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, ts := range m.hosts {
		ts.srv.multi.mu.Lock()
		n += len(ts.srv.multi.starts)
		ts.srv.multi.mu.Unlock()
	}
	return n
}

// waitShares waits until every partition runs on exactly one host, the
// hosts' counts are want (in host id order) and no start is under way.
func (m *multiHosts) waitShares(want map[string]int, within time.Duration) map[string][]int {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := m.owned()
		ok, total := true, 0
		for id, ps := range got {
			total += len(ps)
			if len(ps) != want[id] {
				ok = false
			}
		}
		if ok && total == m.p && len(got) == len(want) && m.starting() == 0 {
			return got
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("shares %v, want counts %v", got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronization
	}
}

// TestHostsSharePartitions: two hosts on one NATS share P = 4
// partitions 2/2; the events published (mixed and partition-aware) are
// applied once, wherever their partition runs, and every answer, from
// either host, equals a single P = 1 segd's over the same events. When
// one host stops it hands its partitions over and the other runs all 4;
// a third host joining takes a share again. Requests made all along
// answer exactly or 503, never a partial count; the change feed holds
// each change once.
func TestHostsSharePartitions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const users = 60
	stream := randomStream(11, users, 60, now)
	m := newMultiHosts(t, 4, now)
	one := startPartitioned(t, t.TempDir(), 1, now)
	h1 := m.start("h1")
	m.start("h2")
	m.waitShares(map[string]int{"h1": 2, "h2": 2}, 30*time.Second)
	ctx := context.Background()
	var last1, last4 uint64
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			items := stream[i]
			id := fmt.Sprintf("b%d", i)
			ack, err := client.PublishBatch(ctx, one.js, "segd.events.test", items, id)
			if err != nil {
				t.Fatal(err)
			}
			last1 = ack.Sequence
			if i%2 == 0 {
				ack, err = client.PublishBatch(ctx, h1.js, "segd.events.test", items, id)
			} else {
				ack, err = client.PublishPartitioned(ctx, h1.js, "segd.events.test", items, id, 4)
			}
			if err != nil {
				t.Fatal(err)
			}
			last4 = max(last4, ack.Sequence)
		}
	}
	// waitHosts waits until every live host applied what its partitions
	// read up to last4, and the merged status is ready.
	waitHosts := func() {
		t.Helper()
		m.mu.Lock()
		hosts := make([]*testServer, 0, len(m.hosts))
		for _, ts := range m.hosts {
			hosts = append(hosts, ts)
		}
		m.mu.Unlock()
		for _, ts := range hosts {
			waitAll(t, ts, last4)
		}
	}
	var names []string
	for i := range users + 5 {
		names = append(names, fmt.Sprintf("user-%d", i))
	}
	publish(0, len(stream)/2)
	waitAll(t, one, last1)
	waitHosts()
	want := answers(t, one, names)
	if want["segment.count checkout_3x_7d"] == "0" {
		t.Fatal("the stream makes no member of checkout_3x_7d")
	}
	// The service's queue group spreads the requests over both hosts:
	// each answer merges local and remote partitions.
	compareAnswers(t, "2 hosts, 2 partitions each", want, answers(t, h1, names))

	// From here, counts asked all along must be exact or a 503.
	asker := askCountsDuring(t, one, h1, "a move", false)

	// h2 stops: it hands its two partitions over, and h1 runs all four.
	took := m.stop("h2")
	shares := m.waitShares(map[string]int{"h1": 4}, 30*time.Second)
	t.Logf("h2 stopped in %s (%.2f leases); shares %v", took.Round(time.Millisecond), took.Seconds()/2, shares)
	waitHosts()

	// h3 joins: it takes a fair share (2 of 4) from h1, which hands them
	// over with a snapshot.
	t0 := time.Now()
	m.start("h3")
	shares = m.waitShares(map[string]int{"h1": 2, "h3": 2}, 30*time.Second)
	waitHosts()
	t.Logf("h3 joined and served its share in %s (%.2f leases); shares %v", time.Since(t0).Round(time.Millisecond),
		time.Since(t0).Seconds()/2, shares)
	asker.stop()
	t.Logf("%d counts asked during the moves, %d answered 503", asker.asked.Load(), asker.unavailable.Load())
	if asker.asked.Load() == asker.unavailable.Load() {
		t.Fatal("no count was answered during the moves")
	}

	// The rest of the stream, then every answer again: nothing lost or
	// applied twice over the moves.
	publish(len(stream)/2, len(stream))
	waitAll(t, one, last1)
	waitHosts()
	want = answers(t, one, names)
	compareAnswers(t, "h1 and h3 after the moves", want, answers(t, h1, names))
	st, err := h1.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if (st.Host != "h1" && st.Host != "h3") || len(st.OwnedPartitions) != 2 {
		t.Fatalf("status host %q owns %v; want h1 or h3 owning 2", st.Host, st.OwnedPartitions)
	}
	feed1 := feedByUser(t, one)
	m.mu.Lock()
	for _, ts := range m.hosts {
		for _, p := range ts.srv.partitions() {
			if err := p.segAPI.feed.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.mu.Unlock()
	compareAnswers(t, "change feed, each change once across the hand-overs", feed1, feedByUser(t, h1))
}

// countAsker asks segment.count through a host, one request at a time,
// while partitions move (askCountsDuring).
type countAsker struct {
	asked, unavailable, lost atomic.Int64
	quit                     chan struct{}
	wg                       sync.WaitGroup
}

// askCountsDuring takes the exact counts of three segments from ref,
// then asks them through via until stop: each answer must be the exact
// count or a 503 naming a moving partition, never a partial sum. during
// names the moment in errors. With allowLost, one request may time out:
// the one in flight on a host cut off (the asker sends one at a time).
func askCountsDuring(t *testing.T, ref, via *testServer, during string, allowLost bool) *countAsker {
	t.Helper()
	ctx := context.Background()
	counts := map[string]uint64{}
	for _, id := range []string{"checkout_3x_7d", "active_buyer", "young_men"} {
		n, err := ref.client.SegmentCount(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		counts[id] = n
	}
	a := &countAsker{quit: make(chan struct{})}
	a.wg.Go(func() {
		for {
			select {
			case <-a.quit:
				return
			default:
			}
			for id, want := range counts {
				n, err := via.client.SegmentCount(ctx, id)
				a.asked.Add(1)
				var ce *client.Error
				switch {
				case err == nil && n != want:
					t.Errorf("segment.count %s = %d during %s; the whole is %d", id, n, during, want)
				case err != nil && asClientError(err, &ce) && ce.Code == "503":
					a.unavailable.Add(1)
				case allowLost && errors.Is(err, context.DeadlineExceeded) && a.lost.Add(1) == 1:
				case err != nil:
					t.Errorf("segment.count %s during %s: %v (want the count or a 503)", id, during, err)
				}
			}
		}
	})
	return a
}

// stop ends the asking and waits for the request in flight.
func (a *countAsker) stop() {
	close(a.quit)
	a.wg.Wait()
}

// kill cuts host id off NATS without a word, as a crash would: its
// connections close, so it renews no lease, acks nothing and answers
// nothing. Its partitions' leases expire and the other hosts take them
// over; it stays in the hosts listed until cleanup closes it.
func (m *multiHosts) kill(id string) {
	m.t.Helper()
	m.mu.Lock()
	ts := m.hosts[id]
	m.mu.Unlock()
	for _, p := range ts.srv.multi.list() {
		p.nc.Close()
	}
	ts.srv.nc.Close()
}

// TestHostDiesPartitionsTakenOver: a host cut off from NATS (a crash)
// loses its partitions when their leases expire; it applies nothing from
// then on (fenced), and the other host takes them over from the Object
// Store's snapshots and the log: every answer equals a P = 1 segd's, and
// counts asked all along are exact or a 503, never a partial sum.
func TestHostDiesPartitionsTakenOver(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const users = 50
	stream := randomStream(23, users, 40, now)
	m := newMultiHosts(t, 4, now)
	one := startPartitioned(t, t.TempDir(), 1, now)
	h1 := m.start("h1")
	h2 := m.start("h2")
	m.waitShares(map[string]int{"h1": 2, "h2": 2}, 30*time.Second)
	ctx := context.Background()
	var last1, last4 uint64
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			id := fmt.Sprintf("b%d", i)
			ack, err := client.PublishBatch(ctx, one.js, "segd.events.test", stream[i], id)
			if err != nil {
				t.Fatal(err)
			}
			last1 = ack.Sequence
			if ack, err = client.PublishPartitioned(ctx, h1.js, "segd.events.test", stream[i], id, 4); err != nil {
				t.Fatal(err)
			}
			last4 = max(last4, ack.Sequence)
		}
	}
	publish(0, len(stream)/2)
	waitAll(t, one, last1)
	waitAll(t, h1, last4)
	waitAll(t, h2, last4)
	// h2's partitions' snapshots in the Object Store: the takeover starts
	// from them.
	if _, err := h2.srv.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	publish(len(stream)/2, len(stream))
	waitAll(t, one, last1)
	waitAll(t, h1, last4)
	waitAll(t, h2, last4)
	// Counts asked all along must be exact or a 503.
	asker := askCountsDuring(t, one, h1, "the takeover", true)

	t0 := time.Now()
	m.kill("h2")
	shares := m.waitShares(map[string]int{"h1": 4, "h2": 0}, 30*time.Second)
	waitAll(t, h1, last4)
	took := time.Since(t0)
	asker.stop()
	t.Logf("h2 cut off → h1 serving all 4 in %s (%.2f leases); shares %v; %d counts asked, %d answered 503, %d lost with h2",
		took.Round(time.Millisecond), took.Seconds()/2, shares, asker.asked.Load(), asker.unavailable.Load(), asker.lost.Load())
	if asker.asked.Load() == 0 {
		t.Fatal("no count was asked during the takeover")
	}
	for _, n := range []int{0, 1, 2, 3} {
		if e, _ := h2.srv.Partition(n); e != nil && slices.Contains(h2.srv.Owned(), n) {
			t.Errorf("h2 still holds partition %d after its leases expired", n)
		}
	}

	var names []string
	for i := range users + 3 {
		names = append(names, fmt.Sprintf("user-%d", i))
	}
	want := answers(t, one, names)
	compareAnswers(t, "h1 after taking h2's partitions over", want, answers(t, h1, names))
	compareAnswers(t, "change feed, each change once across the takeover", feedByUser(t, one), feedByUser(t, h1))
}

// TestHostsRuleChangesReachEveryPartition: a rule put through one host
// runs in every partition, wherever it runs (each host applies what the
// rules bucket says), and a partition that moves afterwards runs it on
// its new host: after a put, a host joining, a second put and a host
// leaving, every answer equals a P = 1 segd's given the same puts.
func TestHostsRuleChangesReachEveryPartition(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const users = 50
	stream := randomStream(31, users, 40, now)
	m := newMultiHosts(t, 4, now)
	one := startPartitioned(t, t.TempDir(), 1, now)
	h1 := m.start("h1")
	m.start("h2")
	m.waitShares(map[string]int{"h1": 2, "h2": 2}, 30*time.Second)
	ctx := context.Background()
	var last1, last4 uint64
	for i, items := range stream {
		id := fmt.Sprintf("b%d", i)
		ack, err := client.PublishBatch(ctx, one.js, "segd.events.test", items, id)
		if err != nil {
			t.Fatal(err)
		}
		last1 = ack.Sequence
		if ack, err = client.PublishBatch(ctx, h1.js, "segd.events.test", items, id); err != nil {
			t.Fatal(err)
		}
		last4 = ack.Sequence
	}
	var names []string
	for i := range users + 3 {
		names = append(names, fmt.Sprintf("user-%d", i))
	}
	waitHosts := func() {
		t.Helper()
		m.mu.Lock()
		hosts := make([]*testServer, 0, len(m.hosts))
		for _, ts := range m.hosts {
			hosts = append(hosts, ts)
		}
		m.mu.Unlock()
		for _, ts := range hosts {
			waitAll(t, ts, last4)
		}
	}
	put := func(def string) {
		t.Helper()
		for _, c := range []*client.Client{one.client, h1.client} {
			rep, err := c.PutRule(ctx, api.RulePutRequest{Definition: def, Author: "test"})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				r, err := c.GetRule(ctx, rep.Segment)
				if err == nil && r.State == "active" && r.Revision == rep.Revision {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("rule %s revision %d not active in time: %+v, %v", rep.Segment, rep.Revision, r, err)
				}
				time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
			}
		}
	}
	waitAll(t, one, last1)
	waitHosts()
	put("id: repeat_payer\ndid: {event: pay, count: \">= 2\", last: 5d}\n")
	want := answers(t, one, names)
	if want["segment.count repeat_payer"] == "0" {
		t.Fatal("repeat_payer has no members: the stream should make some")
	}
	compareAnswers(t, "2 hosts after a rule.put", want, answers(t, h1, names))

	h3 := m.start("h3")
	m.waitShares(map[string]int{"h1": 2, "h2": 1, "h3": 1}, 30*time.Second)
	waitHosts()
	compareAnswers(t, "3 hosts after a host joined", want, answers(t, h1, names))

	put("id: repeat_payer\ndid: {event: pay, count: \">= 3\", last: 7d}\n")
	m.stop("h1")
	m.waitShares(map[string]int{"h2": 2, "h3": 2}, 30*time.Second)
	waitHosts()
	want = answers(t, one, names)
	compareAnswers(t, "2 hosts after a second put and a host leaving", want, answers(t, h3, names))
}

// TestRuleChangeMeetsAStoppedPartition: a rule change that reaches a
// partition just as it stops (it moved to another host) ends at once as
// done for it, instead of waiting for ever on an engine that no longer
// takes commands (which held the rules' lock, and so every later rule
// change and partition start, for as long as the applier's context).
func TestRuleChangeMeetsAStoppedPartition(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	m := newMultiHosts(t, 2, now)
	h1 := m.start("h1")
	m.waitShares(map[string]int{"h1": 2}, 30*time.Second)
	p := h1.srv.partitions()[0]
	seg, _, err := p.engine.Segment("checkout_3x_7d")
	if err != nil {
		t.Fatal(err)
	}
	h1.srv.multi.stopPart(p, false) // as a move does, while the change is under way
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := h1.srv.rules.apply(ctx, ctx, p, &ruleChange{id: seg.ID, rev: 99, seg: seg})
	if ctx.Err() != nil {
		t.Fatal("applying a rule change to a stopped partition waited until its context ended")
	}
	if res.outcome != applyDone {
		t.Fatalf("outcome %v; want done (the partition's next owner starts with the current definitions)", res.outcome)
	}
	if err := h1.srv.eachEngine(ctx, func(*engine.Engine) {}); err != nil || ctx.Err() != nil {
		t.Fatalf("eachEngine after a partition stopped: %v, %v", err, ctx.Err())
	}
}

// TestHostsShareUnderDocumentedPermissions: two hosts whose NATS user
// has the segd permissions of docs/security.md share P = 2, one partition
// each: each answers for the partition the other runs (internal requests
// on segd.internal.v1.>), so a reader finds every buyer and counts them
// all, whichever host answers.
func TestHostsShareUnderDocumentedPermissions(t *testing.T) { // not parallel: t.Setenv
	ns, password, dir := documentedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rules := writeRoleRules(t, dir)
	var hosts []*Server
	for _, id := range []string{"a", "b"} {
		srv, err := Start(ctx, Config{DataDir: filepath.Join(dir, "segd-"+id), NATSURL: ns.ClientURL(), RulePaths: []string{rules},
			NATSOptions: []nats.Option{nats.UserInfo("segd", password["segd"]), nats.CustomInboxPrefix("_INBOX.segd")},
			HostID:      id, Lease: 2 * time.Second, Partitions: 2,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatalf("host %s under its documented permissions: %v", id, err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		hosts = append(hosts, srv)
	}
	for deadline := time.Now().Add(30 * time.Second); len(hosts[0].Owned()) != 1 || len(hosts[1].Owned()) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("shares %v and %v, want one partition each", hosts[0].Owned(), hosts[1].Owned())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronization
	}
	connect := func(role string) *nats.Conn {
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(role, password[role]), nats.CustomInboxPrefix("_INBOX."+role))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	pjs, err := jetstream.New(connect("producer"))
	if err != nil {
		t.Fatal(err)
	}
	var items []api.Item
	for i := range 8 {
		items = append(items, api.Item{User: fmt.Sprintf("buyer-%d", i), Event: "buy"})
	}
	if _, err := client.PublishPartitioned(ctx, pjs, "segd.events.x", items, "", 2); err != nil {
		t.Fatal(err)
	}
	reader := client.New(connect("reader"))
	for _, it := range items {
		waitMember(ctx, t, reader, it.User, "buyers")
	}
	for i := range 10 { // the queue group spreads them over both hosts
		n, err := reader.SegmentCount(ctx, "buyers")
		if err != nil || n != uint64(len(items)) {
			t.Fatalf("count %d: %d, %v; want %d", i, n, err, len(items))
		}
	}
}

// TestHostsUploadWaitsForEveryPartition: segment.upload answers once
// every partition has applied the upload, those on the other host too
// (WaitApplied): while the other host's writers are held, a host's wait
// does not end; once they go on, the size read right after an upload is
// the whole upload.
func TestHostsUploadWaitsForEveryPartition(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	m := newMultiHosts(t, 4, now)
	h1 := m.start("h1")
	h2 := m.start("h2")
	m.waitShares(map[string]int{"h1": 2, "h2": 2}, 30*time.Second)
	ctx := context.Background()

	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the hosts close, should the test fail
	var held sync.WaitGroup
	for _, p := range h2.srv.partitions() {
		held.Go(func() { _ = p.engine.Do(ctx, func() error { <-gate; return nil }) })
	}
	ack, err := client.PublishBatch(ctx, h1.js, "segd.events.test", randomStream(5, 40, 1, now)[0], "")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = h1.srv.WaitApplied(short, ack.Sequence)
	cancel()
	if err == nil {
		t.Fatal("h1's WaitApplied returned while h2's partitions could not apply the message")
	}
	release()
	held.Wait()
	long, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h1.srv.WaitApplied(long, ack.Sequence); err != nil {
		t.Fatalf("WaitApplied once h2 goes on: %v", err)
	}

	for round := range 5 {
		var ids []string
		for i := range 40 + round {
			ids = append(ids, fmt.Sprintf("tester-%d-%d", round, i))
		}
		if _, err := h1.client.Upload(ctx, "beta_testers", ids, "replace"); err != nil {
			t.Fatal(err)
		}
		n, err := h1.client.SegmentCount(ctx, "beta_testers")
		if err != nil || n != uint64(len(ids)) {
			t.Fatalf("round %d: beta_testers has %d members right after the upload answered (%v); want %d", round, n, err, len(ids))
		}
	}
}
