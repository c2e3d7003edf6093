package host

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// TestStandbyTakesOver runs segd hosts as processes on one NATS server
// (real JetStream) with a 2s lease: h1 owns the stream and h2 stands by
// (no consumer, no service instance); h1 is killed with SIGKILL during
// ingest and h2 takes over from the Object Store's snapshot; h1's data
// dir comes back as h3, standing by; h2 is frozen with SIGSTOP during
// ingest, h3 takes over, and h2, thawed, must write nothing and stand by
// again. Throughout, at most one segd consumer exists on the events
// stream. At the end every membership and count equals the reference
// over the whole stream, and SEGD_CHANGES holds each change once: per
// segment and user, enters and exits alternate and end at the reference.
func TestStandbyTakesOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs segd as processes")
	}
	t.Parallel()
	bin := buildSegd(t, t.TempDir())
	// P = 1: one host owns the stream, the others stand by. With more
	// partitions the hosts share them (multihost.go): TestHostsShare-
	// Partitions and the 3-node cluster test.
	for _, parts := range []int{1} {
		t.Run(fmt.Sprintf("P=%d", parts), func(t *testing.T) {
			t.Parallel()
			testStandbyTakesOver(t, bin, parts, "")
		})
	}
}

// testStandbyTakesOver runs the test on the NATS at url (comma-separated
// for a cluster), or on a server of its own when url is empty.
func testStandbyTakesOver(t *testing.T, bin string, partitions int, url string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEGD_STANDBY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (SEGD_STANDBY_SEED=%d reproduces the stream)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 14))

	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(crashRules), 0o644); err != nil {
		t.Fatal(err)
	}
	if url == "" {
		ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: filepath.Join(dir, "nats"), Port: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Shutdown()
		url = ns.ClientURL()
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c := client.New(nc)

	fleet := newSegdFleet(t, bin, dir)
	start := func(id, data string) *segdProcess {
		t.Helper()
		return fleet.start(id, "--nats", url, "--host-id", id, "--lease", "2s",
			"--data-dir", filepath.Join(dir, data), "--rules", rulesFile, "--snapshot-interval", "100ms",
			"--partitions", strconv.Itoa(partitions))
	}

	// At most one segd consumer on the events stream, sampled all along.
	var maxConsumers, samples atomic.Int64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		for {
			if n, ok := segdConsumers(js); ok {
				samples.Add(1)
				if int64(n) > maxConsumers.Load() {
					maxConsumers.Store(int64(n))
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond): // the sampling period
			}
		}
	}()

	now := time.Now()
	stream := crashStream(rng, 300, now)

	h1 := start("h1", "data-1")
	waitOwner(t, c, "h1", 60*time.Second)
	h2 := start("h2", "data-2")
	t.Logf("%v: h2", time.Since(now).Round(time.Millisecond))
	waitProcLog(t, h2, "owner=h1", 30*time.Second)
	if n := serviceInstances(t, nc); n != 1 {
		t.Fatalf("%d segd service instances answer a ping with h2 standing by; want 1 (the owner's)", n)
	}

	// SIGKILL h1 during ingest; h2 takes over.
	if got := publishUntilGone(url, stream, 0, 80, nil); got != 80 {
		t.Fatalf("published %d of 80 batches", got)
	}
	waitHostApplied(t, c, "h1", 40)
	published := make(chan int, 1)
	go func() { published <- publishUntilGone(url, stream, 80, 180, nil) }()
	waitHostApplied(t, c, "h1", 60)
	waitObjectSnapshot(t, js, "h1", partitions)
	killed := time.Now()
	t.Logf("%v: killed", time.Since(now).Round(time.Millisecond))
	if err := h1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = h1.wait()
	waitOwner(t, c, "h2", 60*time.Second)
	takeoverKill := time.Since(killed)
	if got := <-published; got != 180 {
		t.Fatalf("published %d of 180 batches", got)
	}
	waitProcLog(t, h2, "snapshot copied from the Object Store", 10*time.Second) // h1's, not a replay from the start

	// h1's data dir back as h3, standing by; SIGSTOP h2 during ingest.
	h3 := start("h3", "data-1")
	t.Logf("%v: h3", time.Since(now).Round(time.Millisecond))
	waitProcLog(t, h3, "owner=h2", 30*time.Second)
	go func() { published <- publishUntilGone(url, stream, 180, len(stream), nil) }()
	waitHostApplied(t, c, "h2", 200)
	stopped := time.Now()
	t.Logf("%v: stopped", time.Since(now).Round(time.Millisecond))
	if err := h2.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitOwner(t, c, "h3", 60*time.Second)
	takeoverStop := time.Since(stopped)
	if err := h2.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitProcLog(t, h2, "standing by again", 30*time.Second)
	t.Logf("%v: waitProcLog", time.Since(now).Round(time.Millisecond))
	waitProcLog(t, h2, "owner=h3", 30*time.Second)
	t.Logf("%v: h2 standing by, owner h3", time.Since(now).Round(time.Millisecond))
	if got := <-published; got != len(stream) {
		t.Fatalf("published %d of %d batches", got, len(stream))
	}
	t.Logf("%v: published", time.Since(now).Round(time.Millisecond))

	st := waitCaughtUp(t, js, c)
	t.Logf("%v: st", time.Since(now).Round(time.Millisecond))
	if st.Host != "h3" {
		t.Fatalf("status answered by %q, want the owner h3", st.Host)
	}
	segs, err := rules.Compile([]rules.File{{Name: "crash.yaml", Data: []byte(crashRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	var events, junk uint64
	for _, b := range stream {
		if b.junk {
			junk++
			continue
		}
		ref.Apply(b.batch, time.Now())
		events += uint64(len(b.batch.Events))
	}
	if st.Events != events || st.NotBatches != junk {
		t.Fatalf("events %d, not batches %d; the stream has %d events and %d junk messages (each counted once)",
			st.Events, st.NotBatches, events, junk)
	}
	checkAgainstReference(t, c, ref, segs)
	checkChangesOnce(t, js, ref, segs)
	t.Logf("%v: checkChangesOnce", time.Since(now).Round(time.Millisecond))

	// SIGTERM h3: it snapshots, puts the snapshot in the Object Store and
	// releases the lease; h2 takes over at once from that snapshot,
	// replaying nothing.
	termed := time.Now()
	if err := h3.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitOwner(t, c, "h2", 60*time.Second)
	takeoverTerm := time.Since(termed)
	if err := h3.wait(); err != nil {
		t.Fatalf("h3 after SIGTERM: %v", err)
	}
	st2 := waitCaughtUp(t, js, c)
	if st2.Host != "h2" || st2.ReplayFrom != st.LastSeq+1 {
		t.Fatalf("after h3 stopped: status %+v; want h2 replaying from %d (h3's last snapshot)", st2, st.LastSeq+1)
	}
	checkAgainstReference(t, c, ref, segs)
	checkChangesOnce(t, js, ref, segs)
	close(stopSampling)
	sampling.Wait()
	if m := maxConsumers.Load(); m != 1 {
		t.Fatalf("up to %d segd consumers of one partition on the events stream at once (%d samples); want exactly 1", m, samples.Load())
	}
	t.Logf("takeover after SIGKILL: %v; after SIGSTOP: %v; after SIGTERM: %v (lease 2s); %d events, %d consumer samples",
		takeoverKill.Round(time.Millisecond), takeoverStop.Round(time.Millisecond), takeoverTerm.Round(time.Millisecond), events, samples.Load())
}

// waitObjectSnapshot waits until the Object Store holds a snapshot
// written by host.
func waitObjectSnapshot(t *testing.T, js jetstream.JetStream, host string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := cluster.OpenSnapshots(ctx, js, cluster.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := store.Newest(ctx, partitions-1, partitions)
		if err == nil && info.Host == host {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no snapshot of %s in the Object Store: %+v %v", host, info, err)
		}
		time.Sleep(10 * time.Millisecond) // polling the bucket
	}
}

// buildSegd builds cmd/segd into dir (with -race under -race).
func buildSegd(t *testing.T, dir string) string {
	t.Helper()
	return buildSegdWith(t, dir, raceSlowdown > 1)
}

// buildSegdWith builds cmd/segd into dir, with the race detector if race.
func buildSegdWith(t testing.TB, dir string, race bool) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build segd")
	}
	bin := filepath.Join(dir, "segd")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race") // the race detector watches segd too
	}
	if out, err := exec.Command(gobin, append(args, "github.com/segd/segd/cmd/segd")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// segdConsumers is the largest number of segd consumers of one
// partition on the events stream (durables segd-o<token> or
// segd-p<N>of<P>-o<token>).
func segdConsumers(js jetstream.JetStream) (int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, false
	}
	names := s.ConsumerNames(ctx)
	per := map[string]int{}
	n := 0
	for name := range names.Name() {
		if strings.HasPrefix(name, bus.DefaultDurable) {
			part, _, _ := strings.Cut(name, "-o")
			per[part]++
			n = max(n, per[part])
		}
	}
	return n, names.Err() == nil
}

// serviceInstances counts the segd micro service instances answering a
// ping within a second.
func serviceInstances(t *testing.T, nc *nats.Conn) int {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING.segd", inbox, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		// Every instance answers; a second is the collection window.
		if _, err := sub.NextMsg(time.Second); err != nil {
			return n
		}
		n++
	}
}

// waitOwner waits until status is answered by host.
func waitOwner(t testing.TB, c *client.Client, host string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil && st.Host == host {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not answered by %s within %v: %+v %v", host, within, st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling the status endpoint
	}
}

// waitApplied waits until host reports seq applied.
func waitHostApplied(t *testing.T, c *client.Client, host string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil && st.Host == host && st.LastSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not apply sequence %d: %+v %v", host, seq, st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling the status endpoint
	}
}

// waitLog waits until p's output holds s.
func waitProcLog(t testing.TB, p *segdProcess, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.output(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within %v", p.log, s, within)
		}
		time.Sleep(10 * time.Millisecond) // polling the log file
	}
}

// checkChangesOnce reads SEGD_CHANGES whole: per segment and user, enters
// and exits must alternate (a doubled change repeats one, a lost one
// breaks the alternation or the end state) and end at the reference.
func checkChangesOnce(t *testing.T, js jetstream.JetStream, ref *reference.Evaluator, segs []*rules.Segment) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]map[string]bool{}
	var msgs int
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("changes seq %d: %v", seq, err)
		}
		var b api.ChangeBatch
		if err := json.Unmarshal(m.Data, &b); err != nil {
			t.Fatalf("changes seq %d: %v", seq, err)
		}
		msgs++
		if in[b.Segment] == nil {
			in[b.Segment] = map[string]bool{}
		}
		for _, u := range b.Enter {
			if in[b.Segment][u] {
				t.Fatalf("changes seq %d (events seq %s): %s entered %s twice", seq, m.Header.Get(api.HeaderEventsSeq), u, b.Segment)
			}
			in[b.Segment][u] = true
		}
		for _, u := range b.Exit {
			if !in[b.Segment][u] {
				t.Fatalf("changes seq %d (events seq %s): %s left %s without having entered", seq, m.Header.Get(api.HeaderEventsSeq), u, b.Segment)
			}
			delete(in[b.Segment], u)
		}
	}
	now := time.Now()
	for _, seg := range segs {
		var got []string
		for u := range in[seg.ID] {
			got = append(got, u)
		}
		slices.Sort(got)
		if want := ref.Members(seg.ID, now); !slices.Equal(got, want) {
			t.Fatalf("segment %s: the change feed folds to %d members, the reference has %d", seg.ID, len(got), len(want))
		}
	}
	t.Logf("%d change messages, each change once", msgs)
}

// TestStandbyHandsOver: a host that sorts first joining the owners while
// h2 holds the stream does not take it (the Owner moves a partition only
// from a host holding more than the most any host's share is): h2 keeps
// consuming and answering, and ends exact. A hand-over on SIGTERM is
// TestStandbyTakesOver's.
func TestStandbyHandsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs segd as a process")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := buildSegd(t, dir)
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(crashRules), 0o644); err != nil {
		t.Fatal(err)
	}
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: filepath.Join(dir, "nats"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	url := ns.ClientURL()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c := client.New(nc)

	newSegdFleet(t, bin, dir).start("h2", "--nats", url, "--host-id", "h2", "--lease", "2s",
		"--data-dir", filepath.Join(dir, "data"), "--rules", rulesFile, "--snapshot-interval", "-1s")

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	stream := crashStream(rng, 120, time.Now())
	waitOwner(t, c, "h2", 60*time.Second)
	if got := publishUntilGone(url, stream, 0, 60, nil); got != 60 {
		t.Fatalf("published %d of 60 batches", got)
	}
	before := waitCaughtUp(t, js, c)

	// Host "a" joins: it sorts first, but h2 holds no more than the most
	// any host's share is (one lease, two hosts), so the lease stays: a
	// joining host never pauses the stream by taking it over.
	gained := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := cluster.Join(ctx, js, cluster.Options{HostID: "a", Partitions: 1, Lease: 2 * time.Second,
		OnGain: func(*cluster.Lease) { gained <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	if got := publishUntilGone(url, stream, 60, len(stream), nil); got != len(stream) {
		t.Fatalf("published %d of %d batches", got, len(stream))
	}
	// Three leases: long enough for a rebalance to have moved it.
	hold := time.NewTimer(6 * time.Second)
	defer hold.Stop()
	select {
	case <-gained:
		t.Fatal("host a took the lease from h2, which holds no more than its share")
	case <-hold.C:
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := waitCaughtUp(t, js, c)
	if st.Host != "h2" || st.ReplayFrom > before.LastSeq {
		t.Fatalf("status after a joined and left: host %q, replayed from %d; want h2 serving since before (last seq then %d)", st.Host, st.ReplayFrom, before.LastSeq)
	}
	if n := serviceInstances(t, nc); n != 1 {
		t.Fatalf("%d segd service instances answer; want h2's alone", n)
	}
	segs, err := rules.Compile([]rules.File{{Name: "crash.yaml", Data: []byte(crashRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	for _, b := range stream {
		if !b.junk {
			ref.Apply(b.batch, time.Now())
		}
	}
	checkAgainstReference(t, c, ref, segs)
	checkChangesOnce(t, js, ref, segs)
}
