package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/bus/clustertest"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/analysisref"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// clusterParts is the number of partitions of TestThreeHostsTwelvePartitions.
const clusterParts = 12

// TestThreeHostsTwelvePartitions is issue 14's cluster test: a JetStream
// cluster of 3 nats-servers (processes on loopback) with every stream and
// bucket at 3 replicas, and 3 segd hosts as processes (--partitions 12,
// --lease 2s). A randomized stream (several days, in a zone drawn from
// the seed) is published, half partition-aware and half mixed; the host
// holding the most partitions is killed with SIGKILL during ingest and
// started again on its data dir; then the host holding the most
// partitions is stopped with SIGTERM. At the end every membership,
// segment size, member.check, member.segments and analysis (events,
// funnel, retention, trend) asked through the public API equals the
// reference evaluators over the whole stream and a single host with
// P = 1 fed the same stream, and the change feed holds each change once.
//
// With hosts as hot standbys one host holds the whole stream's lease
// (counted as 12 partitions); with partitions shared between hosts the
// same phases move a share each. The test log records how many
// partitions each host held at every phase.
func TestThreeHostsTwelvePartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster and 4 segd as processes")
	}
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEGD_CLUSTER_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	zones := []string{"UTC", "America/New_York", "Asia/Kolkata"}
	zone := zones[seed%uint64(len(zones))]
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d, zone %s (SEGD_CLUSTER_SEED=%d reproduces both)", seed, zone, seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	began := time.Now()
	phase := func(format string, args ...any) {
		t.Helper()
		t.Logf("%6.1fs %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}

	dir := t.TempDir()
	// The children run without the race detector: 4 segd, 3 of them with
	// 12 partitions, under -race outgrow a 2-core machine. The race
	// detector watches the same code in TestStandbyTakesOver.
	bin := buildSegdWith(t, dir, false)
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(crashRules), 0o644); err != nil {
		t.Fatal(err)
	}
	stream := crashStream(rng, 240, time.Now())
	fleet := newSegdFleet(t, bin, dir)
	common := []string{"--rules", rulesFile, "--tz", zone, "--snapshot-interval", "200ms"}
	phase("segd built")

	// The single host with P = 1, on a server of its own, side by side.
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: filepath.Join(dir, "nats-single"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	fleet.start("single", append([]string{"--nats", ns.ClientURL(), "--partitions", "1",
		"--data-dir", filepath.Join(dir, "data-single")}, common...)...)
	singleDone := make(chan int, 1)
	go func() { singleDone <- publishUntilGoneParts(ns.ClientURL(), stream, 0, len(stream), nil, 1) }()

	c := clustertest.Start(t, clustertest.Options{})
	url := c.URL()
	nc := c.Connect(t)
	js, _ := jetstream.New(nc)
	cl := client.New(nc)
	phase("cluster of %d nats-servers ready", c.Size())
	host := func(id string) *segdProcess {
		return fleet.start(id, append([]string{"--nats", url, "--host-id", id, "--lease", "2s", "--replicas", "3",
			"--partitions", strconv.Itoa(clusterParts), "--data-dir", filepath.Join(dir, "data-"+id)}, common...)...)
	}
	hosts := map[string]*segdProcess{}
	for _, id := range []string{"h1", "h2", "h3"} {
		hosts[id] = host(id)
	}
	live := []string{"h1", "h2", "h3"}
	own := waitServed(t, js, cl, live, 0)
	phase("3 hosts up: %v", own)
	checkReplicas(t, js, 3)

	// Ingest; SIGKILL the host holding most partitions while batches
	// arrive.
	third := len(stream) / 3
	if got := publishUntilGoneParts(url, stream, 0, third, nil, clusterParts); got != third {
		t.Fatalf("published %d of %d batches", got, third)
	}
	published := make(chan int, 1)
	go func() { published <- publishUntilGoneParts(url, stream, third, 2*third, nil, clusterParts) }()
	waitServed(t, js, cl, live, streamLast(t, js)/2)
	victim := mostOwned(own, live)
	killed := time.Now()
	if err := hosts[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = hosts[victim].wait()
	live = slices.DeleteFunc(slices.Clone(live), func(h string) bool { return h == victim })
	at := streamLast(t, js)
	own = waitServed(t, js, cl, live, 0)
	phase("SIGKILL %s during ingest (events stream at %d): served again after %v: %v", victim, at,
		time.Since(killed).Round(time.Millisecond), own)
	if got := <-published; got != 2*third {
		t.Fatalf("published %d of %d batches", got, 2*third)
	}

	// The killed host comes back on its data dir.
	hosts[victim] = host(victim)
	live = append(live, victim)
	waitJoined(t, js, hosts[victim], victim)
	go func() { published <- publishUntilGoneParts(url, stream, 2*third, len(stream), nil, clusterParts) }()
	own = waitServed(t, js, cl, live, 0)
	phase("%s started again: %v", victim, own)

	// SIGTERM the host holding most partitions now, during ingest.
	leaver := mostOwned(own, live)
	termed := time.Now()
	if err := hosts[leaver].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := hosts[leaver].wait(); err != nil {
		t.Fatalf("%s after SIGTERM: %v", leaver, err)
	}
	live = slices.DeleteFunc(slices.Clone(live), func(h string) bool { return h == leaver })
	own = waitServed(t, js, cl, live, 0)
	phase("SIGTERM %s: served again after %v: %v", leaver, time.Since(termed).Round(time.Millisecond), own)
	if got := <-published; got != len(stream) {
		t.Fatalf("published %d of %d batches", got, len(stream))
	}
	st := waitCaughtUp(t, js, cl)
	own = waitServed(t, js, cl, live, st.LastSeq)
	phase("caught up at %d: %v", st.LastSeq, own)

	// The reference over the whole stream.
	segs, err := rules.Compile([]rules.File{{Name: "crash.yaml", Data: []byte(crashRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, loc, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	var events []rules.Event
	var junk uint64
	for _, b := range stream {
		if b.junk {
			junk++
			continue
		}
		ref.Apply(b.batch, time.Now())
		events = append(events, b.batch.Events...)
	}
	if st.Events != uint64(len(events)) || st.NotBatches != junk {
		t.Fatalf("events %d, not batches %d; the stream has %d events and %d junk messages (each counted once)",
			st.Events, st.NotBatches, len(events), junk)
	}
	checkAgainstReference(t, cl, ref, segs)
	checkChangesOnce(t, js, ref, segs)
	got := clusterAnswers(t, cl, ref, segs, events, loc)
	phase("%d answers equal the reference", len(got))

	// The single host with P = 1 gives the same answers.
	if n := <-singleDone; n != len(stream) {
		t.Fatalf("single host: published %d of %d batches", n, len(stream))
	}
	snc, scl := connectWhenUp(t, ns.ClientURL())
	defer snc.Close()
	sjs, _ := jetstream.New(snc)
	waitCaughtUp(t, sjs, scl)
	want := clusterAnswers(t, scl, ref, segs, events, loc)
	compareAnswers(t, "3 hosts, P=12 vs 1 host, P=1", want, got)
	phase("%d answers equal a single host's with P = 1", len(want))
}

// segdFleet starts `segd serve` processes whose output goes to a log
// file each; when the test ends it kills those still running, fails the
// test on a race report in any log, and prints the logs of a failed test
// (or always, with SEGD_STANDBY_LOGS set).
type segdFleet struct {
	t     testing.TB
	bin   string
	dir   string
	procs []*segdProcess
	runs  map[string]int
}

func newSegdFleet(t testing.TB, bin, dir string) *segdFleet {
	f := &segdFleet{t: t, bin: bin, dir: dir, runs: map[string]int{}}
	t.Cleanup(f.stop)
	return f
}

// start runs `segd serve args...` as name; each run of a name logs to
// its own file.
func (f *segdFleet) start(name string, args ...string) *segdProcess {
	f.t.Helper()
	return f.startIn("", name, args...)
}

// startIn is start in the working directory dir ("": the test's).
func (f *segdFleet) startIn(dir, name string, args ...string) *segdProcess {
	f.t.Helper()
	f.runs[name]++
	p := &segdProcess{log: filepath.Join(f.dir, fmt.Sprintf("%s-%d.log", name, f.runs[name]))}
	out, err := os.Create(p.log)
	if err != nil {
		f.t.Fatal(err)
	}
	defer out.Close()
	p.cmd = exec.Command(f.bin, append([]string{"serve"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Dir = dir
	if err := p.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.procs = append(f.procs, p)
	return p
}

func (f *segdFleet) stop() {
	for _, p := range f.procs {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		_ = p.wait()
		if strings.Contains(p.output(), "DATA RACE") {
			f.t.Errorf("%s: the race detector reported a data race", p.log)
		}
		if f.t.Failed() || os.Getenv("SEGD_STANDBY_LOGS") != "" {
			f.t.Logf("%s:\n%s", p.log, p.output())
		}
	}
}

// partitionOwners reads the leases in SEGD_OWNERS: how many of the
// clusterParts partitions each host holds. The whole stream's lease of
// hot standbys (key p0of1) counts as every partition.
func partitionOwners(js jetstream.JetStream) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, cluster.OwnersBucket)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	own := map[string]int{}
	for k := range keys.Keys() {
		var n int
		switch {
		case k == cluster.PartitionKey(0, 1):
			n = clusterParts
		case strings.HasSuffix(k, "of"+strconv.Itoa(clusterParts)) && strings.HasPrefix(k, "p"):
			n = 1
		default:
			continue // a host's key
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released since listed
		}
		if err != nil {
			return nil, err
		}
		var v struct {
			Host string `json:"host"`
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return nil, fmt.Errorf("key %s: %w", k, err)
		}
		own[v.Host] += n
	}
	return own, nil
}

// waitServed waits until every partition is held by one of the live
// hosts and status answers ready with at least seq applied; it returns
// the partitions each host holds.
func waitServed(t *testing.T, js jetstream.JetStream, c *client.Client, live []string, seq uint64) map[string]int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		own, err := partitionOwners(js)
		total, dead := 0, ""
		for h, n := range own {
			total += n
			if !slices.Contains(live, h) {
				dead = h
			}
		}
		var st *api.StatusReply
		if err == nil && total == clusterParts && dead == "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err = c.Status(ctx)
			cancel()
			if err == nil && st.Ready && st.LastSeq >= seq {
				return own
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not served by %v with sequence %d applied: leases %v (of %d), status %+v, %v",
				live, seq, own, clusterParts, st, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the leases and status
	}
}

// waitJoined waits until a (re)started host is among the owners: its
// host key is in SEGD_OWNERS, or, as a hot standby, it logged the owner
// it waits for.
func waitJoined(t *testing.T, js jetstream.JetStream, p *segdProcess, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		joined := false
		if kv, err := js.KeyValue(ctx, cluster.OwnersBucket); err == nil {
			_, err = kv.Get(ctx, "h."+id)
			joined = err == nil
		}
		cancel()
		if joined || strings.Contains(p.output(), "standby: another host owns the stream") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not join the owners: %s", id, p.output())
		}
		time.Sleep(20 * time.Millisecond) // polling the owners bucket and the log
	}
}

// mostOwned is the live host holding the most partitions (the first by
// name on a tie).
func mostOwned(own map[string]int, live []string) string {
	best := ""
	for _, h := range slices.Sorted(slices.Values(live)) {
		if best == "" || own[h] > own[best] {
			best = h
		}
	}
	return best
}

// streamLast is the events stream's last sequence.
func streamLast(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// checkReplicas checks that every stream segd made (buckets included) has
// n replicas.
func checkReplicas(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := []string{bus.EventsStream, api.ChangesStream, bus.DeadLetterStream, "KV_" + bus.RulesBucket,
		"OBJ_" + bus.PluginsBucket, "KV_" + cluster.OwnersBucket, "OBJ_" + cluster.SnapshotsBucket}
	for _, name := range want {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != n {
			t.Fatalf("stream %s has %d replicas, want %d (--replicas)", name, r, n)
		}
	}
}

// clusterAnswers asks every membership, size and analysis of the crash
// rules through the public API, checks each against the reference
// evaluators (membership: ref; analyses: analysisref over events, in
// loc), and returns them in a form to compare with another run.
func clusterAnswers(t *testing.T, c *client.Client, ref *reference.Evaluator, segs []*rules.Segment,
	events []rules.Event, loc *time.Location) map[string]string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	out := map[string]string{}
	put := func(key string, v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[key] = string(b)
	}

	// Dense ids of the test's own for the analysis reference: it uses them
	// only to tell users apart and to test segment membership.
	ids := make([]uint32, len(events))
	idOf := map[string]uint32{}
	var users []string
	for i, ev := range events {
		id, ok := idOf[ev.User]
		if !ok {
			id = uint32(len(idOf))
			idOf[ev.User] = id
			users = append(users, ev.User)
		}
		ids[i] = id
	}
	slices.Sort(users)
	members := map[string][]string{}
	in := map[string]func(uint32) bool{api.AllUsers: func(uint32) bool { return true }}
	for _, s := range segs {
		members[s.ID] = ref.Members(s.ID, now)
		set := map[uint32]bool{}
		for _, u := range members[s.ID] {
			if id, ok := idOf[u]; ok {
				set[id] = true
			}
		}
		in[s.ID] = func(id uint32) bool { return set[id] }
	}

	list, err := c.Segments(ctx)
	put("segment.list sizes", func() []string {
		var ss []string
		for _, s := range list {
			ss = append(ss, fmt.Sprintf("%s=%d", s.ID, s.Size))
		}
		return ss
	}(), err)
	for _, s := range segs {
		n, err := c.SegmentCount(ctx, s.ID)
		if err == nil && n != uint64(len(members[s.ID])) {
			t.Fatalf("segment.count %s: %d, reference %d", s.ID, n, len(members[s.ID]))
		}
		put("segment.count "+s.ID, n, err)
	}
	for _, u := range users {
		memberships, err := c.UserMemberships(ctx, u)
		if err != nil {
			t.Fatalf("member.segments %s: %v", u, err)
		}
		var ms []string
		for _, m := range memberships {
			ms = append(ms, m.Segment)
		}
		slices.Sort(ms)
		var want []string
		for _, s := range segs {
			rep, err := c.MemberCheck(ctx, u, s.ID)
			if err != nil {
				t.Fatalf("member.check %s %s: %v", u, s.ID, err)
			}
			isMember := slices.Contains(members[s.ID], u)
			if rep.Member != isMember {
				t.Fatalf("member.check %s %s: %v, reference %v", u, s.ID, rep.Member, isMember)
			}
			if isMember {
				want = append(want, s.ID)
			}
			// The point of the log each read, and when this host's engine
			// judged the user in (wall-clock time of processing).
			rep.AsOf, rep.Since = nil, ""
			put("member.check "+u+" "+s.ID, rep, nil)
		}
		slices.Sort(want)
		if !slices.Equal(ms, want) {
			t.Fatalf("member.segments %s: %v, reference %v", u, ms, want)
		}
		put("member.segments "+u, ms, nil)
	}

	raw := &analysisref.Raw{Events: events, IDs: ids, Loc: loc, Now: now, Days: analysis.DefaultDays}
	day := func(back int) string { return now.In(loc).AddDate(0, 0, -back).Format(time.DateOnly) }
	from, to := day(6), day(0)
	segIDs := []string{"buyers", "non_payers", "converted"}

	ev, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"checkout", "pay", "page_view", "search"},
		Segments: segIDs, From: from, To: to, Measures: []string{"uniques", "total", "sum:amount", "at_least:2"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ev.Series {
		if w := raw.EventSeries(in[s.Segment], s.Event, s.Measure, from, to); !slices.Equal(s.Values, w) {
			t.Fatalf("analysis.events %s %s %s: %v, reference %v", s.Segment, s.Event, s.Measure, s.Values, w)
		}
	}
	put("analysis.events", ev, nil)

	steps := []string{"page_view", "checkout", "pay"}
	for _, mode := range []string{"", "strict_order", "strict_deduplication", "strict_increase"} {
		fr, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: steps[0]}, {Event: steps[1]}, {Event: steps[2]}},
			Window: "1d", From: from, To: to, Segments: segIDs, Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range fr.Segments {
			w := raw.Funnel(in[s.Segment], steps, 24*time.Hour, strings.Contains(mode, "strict_order"),
				strings.Contains(mode, "dedup"), strings.Contains(mode, "increase"), from, to)
			for k := range w {
				if s.Steps[k].Users != w[k] {
					t.Fatalf("analysis.funnel %q %s: %+v, reference %v", mode, s.Segment, s.Steps, w)
				}
			}
		}
		put("analysis.funnel "+mode, fr, nil)
	}

	for _, mode := range []string{api.RetentionFirstTime, api.RetentionRecurring} {
		rr, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "page_view", ReturnEvent: "checkout",
			From: from, To: to, Days: 4, Mode: mode, Segments: segIDs})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rr.Segments {
			sizes, retained, days := raw.Retention(in[s.Segment], "page_view", "checkout", from, to, 4, mode == api.RetentionRecurring)
			if len(s.Cohorts) != len(sizes) {
				t.Fatalf("analysis.retention %s %s: %d cohorts, reference %d", mode, s.Segment, len(s.Cohorts), len(sizes))
			}
			for i, co := range s.Cohorts {
				if co.Day != days[i] || co.Size != sizes[i] || !slices.Equal(co.Retained, retained[i]) {
					t.Fatalf("analysis.retention %s %s: %+v, reference %s %d %v", mode, s.Segment, co, days[i], sizes[i], retained[i])
				}
			}
		}
		put("analysis.retention "+mode, rr, nil)
	}

	tr, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{Segments: segIDs, From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Segments) != len(segIDs)+1 || tr.Days[len(tr.Days)-1] != to {
		t.Fatalf("analysis.trend: days %v, %d segments", tr.Days, len(tr.Segments))
	}
	if got := tr.Segments[0].Sizes[len(tr.Days)-1]; got != uint64(len(users)) {
		t.Fatalf("analysis.trend: all users today %d, reference %d", got, len(users))
	}
	for i, id := range segIDs {
		if got := tr.Segments[i+1].Sizes[len(tr.Days)-1]; got != uint64(len(members[id])) {
			t.Fatalf("analysis.trend %s today: %d, reference %d", id, got, len(members[id]))
		}
	}
	put("analysis.trend", tr, nil)
	return out
}
