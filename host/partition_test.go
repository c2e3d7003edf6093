package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

const partitionRules = testRules + `
  - id: beta_testers
    static: true
  - id: active_buyer
    all:
      - in_segment: checkout_3x_7d
      - not: {in_segment: quiet_3d}
  - id: payer_or_beta
    any: [{in_segment: big_payer_2d}, {in_segment: beta_testers}]
`

// startPartitioned starts segd with p partitions on dataDir, the rules
// above and a manual clock at now.
func startPartitioned(t *testing.T, dataDir string, p int, now time.Time) *testServer {
	t.Helper()
	return startPartitionedRules(t, dataDir, p, now, partitionRules)
}

// startPartitionedRules is startPartitioned with other rules.
func startPartitionedRules(t *testing.T, dataDir string, p int, now time.Time, ruleText string) *testServer {
	t.Helper()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(ruleText), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(now), Partitions: p, SnapshotInterval: -1,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
}

// randomStream is a randomized stream of batches: events of a few names
// over 14 days before now, with properties, and profile updates.
func randomStream(seed uint64, users, batches int, now time.Time) [][]api.Item {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	names := []string{"checkout", "pay", "page_view", "signup"}
	var out [][]api.Item
	for range batches {
		n := 1 + rng.IntN(40)
		items := make([]api.Item, 0, n)
		for range n {
			u := fmt.Sprintf("user-%d", rng.IntN(users))
			if rng.IntN(10) == 0 {
				items = append(items, api.Item{User: u, Profile: map[string]any{"age": 15 + rng.IntN(30),
					"gender": []string{"male", "female"}[rng.IntN(2)]}})
				continue
			}
			at := now.Add(-time.Duration(rng.Int64N(int64(14 * 24 * time.Hour))))
			items = append(items, api.Item{User: u, Event: names[rng.IntN(len(names))], Time: at.Format(time.RFC3339Nano),
				Props: map[string]any{"amount": rng.IntN(100)}})
		}
		out = append(out, items)
	}
	return out
}

// answers are every answer of segd's read API that the partitions must
// give as one engine does, in a form to compare (member lists sorted: a
// partitioned segd pages in its global id order).
func answers(t *testing.T, ts *testServer, users []string) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := ts.client
	out := map[string]string{}
	put := func(key string, v any, err error) {
		t.Helper()
		if err != nil {
			var ce *client.Error
			if errors.As(err, &ce) {
				out[key] = "error " + ce.Code
				return
			}
			t.Fatalf("%s: %v", key, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[key] = string(b)
	}
	segs, err := c.Segments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range segs {
		// Which user's item failed last depends on the order partitions
		// are asked in; how many failed does not.
		segs[i].LastEvalError = ""
	}
	put("segment.list", segs, err)
	for _, s := range segs {
		n, err := c.SegmentCount(ctx, s.ID)
		put("segment.count "+s.ID, n, err)
		var members []string
		cursor := ""
		for pages := 0; ; pages++ {
			rep, err := c.Members(ctx, s.ID, cursor, 7)
			if err != nil {
				t.Fatalf("segment.members %s: %v", s.ID, err)
			}
			members = append(members, rep.Users...)
			if rep.Next == "" {
				break
			}
			if pages > 1000 {
				t.Fatalf("segment.members %s: cursor does not end", s.ID)
			}
			cursor = rep.Next
		}
		slices.Sort(members)
		if len(slices.Compact(slices.Clone(members))) != len(members) {
			t.Fatalf("segment.members %s pages a user twice: %v", s.ID, members)
		}
		put("segment.members "+s.ID, members, nil)
		ex, err := c.Export(ctx, s.ID, "ids")
		if err == nil {
			slices.Sort(ex.Users)
			put("segment.export "+s.ID, []any{ex.Count, ex.Users}, nil)
		} else {
			put("segment.export "+s.ID, nil, err)
		}
		from := ts.clock.Now().AddDate(0, 0, -10).Format(time.DateOnly)
		hist, err := c.History(ctx, s.ID, from, "")
		put("segment.history "+s.ID, hist, err)
	}
	for _, q := range []string{"checkout_3x_7d & !quiet_3d", "young_men | beta_testers", "(big_payer_2d | active_buyer) - young_men"} {
		rep, err := c.Query(ctx, q, false, 10000)
		if err == nil {
			slices.Sort(rep.Users)
		}
		put("segment.query "+q, rep, err)
	}
	for _, u := range users {
		ms, err := c.UserMemberships(ctx, u)
		put("member.segments "+u, ms, err)
		for _, s := range segs {
			rep, err := c.MemberCheck(ctx, u, s.ID)
			if err == nil {
				rep.AsOf = nil // the point of the log each read
			}
			put("member.check "+u+" "+s.ID, rep, err)
		}
		ug, err := c.User(ctx, api.UserGetRequest{User: u, From: ts.clock.Now().AddDate(0, 0, -30).Format(time.DateOnly)})
		put("user.get "+u, ug, err)
	}
	pv, err := c.Preview(ctx, "id: pv\ndid: {event: page_view, count: \">= 2\", last: 10d}\n", 10000)
	if err == nil {
		slices.Sort(pv.Users)
		pv.Seq, pv.Messages, pv.TookMs = 0, 0, 0 // the logs differ in their messages
	}
	put("segment.preview", pv, err)
	ids := []string{"checkout_3x_7d", "beta_testers", "active_buyer"}
	ev, err := c.AnalyzeEvents(ctx, api.AnalysisEventsRequest{Events: []string{"checkout", "pay", "page_view"}, Segments: ids,
		Measures: []string{"uniques", "total", "at_least:2"}})
	put("analysis.events", ev, err)
	fu, err := c.AnalyzeFunnel(ctx, api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "page_view"}, {Event: "checkout"}, {Event: "pay"}},
		Window: "7d", Segments: ids})
	put("analysis.funnel", fu, err)
	re, err := c.AnalyzeRetention(ctx, api.AnalysisRetentionRequest{StartEvent: "signup", ReturnEvent: "page_view", Days: 7, Segments: ids})
	put("analysis.retention", re, err)
	tr, err := c.AnalyzeTrend(ctx, api.AnalysisTrendRequest{Segments: ids})
	put("analysis.trend", tr, err)
	return out
}

// compareAnswers fails on the first answer that differs.
func compareAnswers(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	diffs := 0
	for _, k := range keys {
		if got[k] != want[k] {
			diffs++
			if diffs <= 5 {
				t.Errorf("%s: %s\n P=1: %s\n got: %s", what, k, want[k], got[k])
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d answers, P=1 gave %d", what, len(got), len(want))
	}
	if diffs > 0 {
		t.Fatalf("%s: %d of %d answers differ", what, diffs, len(want))
	}
}

// waitAll waits until the server applied up to seq and is ready.
func waitAll(t *testing.T, ts *testServer, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := ts.srv.WaitApplied(ctx, seq); err != nil {
		t.Fatalf("apply up to %d: %v", seq, err)
	}
	if err := ts.srv.WaitRebuilt(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := ts.client.Status(ctx)
		if err == nil && st.Ready {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("not ready: %+v, %v", st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// TestPartitionsAnswerAsOne runs one randomized stream into segd with one
// partition and with four (published mixed and partition-aware, with an
// upload) and compares every answer; then restarts the four from their
// snapshots, compares again, and checks that the stream refuses another P.
func TestPartitionsAnswerAsOne(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const users = 60
	stream := randomStream(7, users, 60, now)
	dir4 := t.TempDir()
	one := startPartitioned(t, t.TempDir(), 1, now)
	four := startPartitioned(t, dir4, 4, now)
	ctx := context.Background()
	p, err := client.StreamPartitions(ctx, four.js)
	if err != nil || p != 4 {
		t.Fatalf("StreamPartitions = %d, %v; want 4", p, err)
	}
	var last1, last4 uint64
	upload := func() {
		var ids []string
		for i := 0; i < users; i += 3 {
			ids = append(ids, fmt.Sprintf("user-%d", i))
		}
		for _, ts := range []*testServer{one, four} {
			if _, err := ts.client.Upload(ctx, "beta_testers", ids, "replace"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, items := range stream {
		if i == len(stream)/2 {
			upload()
		}
		id := fmt.Sprintf("b%d", i)
		ack, err := client.PublishBatch(ctx, one.js, "segd.events.test", items, id)
		if err != nil {
			t.Fatal(err)
		}
		last1 = ack.Sequence
		if i%2 == 0 { // mixed: every partition reads it and keeps its users
			ack, err = client.PublishBatch(ctx, four.js, "segd.events.test", items, id)
		} else {
			ack, err = client.PublishPartitioned(ctx, four.js, "segd.events.test", items, id, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		last4 = max(last4, ack.Sequence)
	}
	// What cannot be applied is counted once: a message that is no batch
	// (and its dead letter), and an invalid item of a mixed batch.
	for _, ts := range []*testServer{one, four} {
		for _, data := range []string{"garbage", `[{"user":"user-1","event":"pay"},{"user":"user-2"}]`} {
			ack, err := ts.js.Publish(ctx, "segd.events.test", []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if ts == one {
				last1 = ack.Sequence
			} else {
				last4 = ack.Sequence
			}
		}
	}
	waitAll(t, one, last1)
	waitAll(t, four, last4)
	{
		st1, err1 := one.client.Status(ctx)
		st4, err4 := four.client.Status(ctx)
		if err1 != nil || err4 != nil {
			t.Fatal(err1, err4)
		}
		if st1.NotBatches != 1 || st1.InvalidItems != 1 || st1.DeadLetters != 1 ||
			st4.NotBatches != st1.NotBatches || st4.InvalidItems != st1.InvalidItems || st4.DeadLetters != st1.DeadLetters {
			t.Fatalf("not batches %d/%d, invalid %d/%d, dead letters %d/%d (P=1/P=4): each counted once",
				st1.NotBatches, st4.NotBatches, st1.InvalidItems, st4.InvalidItems, st1.DeadLetters, st4.DeadLetters)
		}
	}
	var names []string
	for i := range users + 5 { // and a few never seen
		names = append(names, fmt.Sprintf("user-%d", i))
	}
	want := answers(t, one, names)
	if want["segment.count checkout_3x_7d"] == "0" || want["segment.count active_buyer"] == "0" {
		t.Fatalf("the stream makes no member of checkout_3x_7d: %v", want["segment.count checkout_3x_7d"])
	}
	compareAnswers(t, "P=4", want, answers(t, four, names))

	st, err := four.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Partitions) != 4 {
		t.Fatalf("status has %d partitions: %+v", len(st.Partitions), st.Partitions)
	}
	var sum uint64
	for _, ps := range st.Partitions {
		if ps.Users == 0 || !ps.Ready {
			t.Errorf("partition %+v: no users or not ready", ps)
		}
		sum += ps.Users
	}
	if st1, _ := one.client.Status(ctx); sum != st1.Users || st.Users != st1.Users || st.Events != st1.Events {
		t.Errorf("P=4 users %d (partitions sum %d), events %d; P=1 %d, %d", st.Users, sum, st.Events, st1.Users, st1.Events)
	}

	// A rule put through the rules API is rebuilt in every partition from
	// its share of the log; the segment is served once all are exact.
	const def = "id: repeat_payer\ndid: {event: pay, count: \">= 2\", last: 5d}\n"
	for _, ts := range []*testServer{one, four} {
		if _, err := ts.client.PutRule(ctx, api.RulePutRequest{Definition: def, Author: "test"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			r, err := ts.client.GetRule(ctx, "repeat_payer")
			if err == nil && r.State == "active" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rule not active in time: %+v, %v", r, err)
			}
			time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
		}
		if n, err := ts.client.SegmentCount(ctx, "repeat_payer"); err != nil {
			t.Fatal(err)
		} else if n == 0 {
			t.Fatalf("repeat_payer has no members: the stream should make some")
		}
	}
	want = answers(t, one, names)
	compareAnswers(t, "P=4 after rule.put", want, answers(t, four, names))

	// The change feed: every user's changes, in order, as with one
	// partition.
	feed1 := feedByUser(t, one)
	if len(feed1) == 0 {
		t.Fatal("the P=1 feed is empty")
	}
	compareAnswers(t, "P=4 change feed", feed1, feedByUser(t, four))

	// Restart from the snapshots written at Close: nothing is replayed,
	// every answer is the same.
	four.close()
	for n := range 4 {
		files, _ := filepath.Glob(filepath.Join(dir4, bus.PartitionName(n, 4), "snapshots", "snapshot-*.segd"))
		if len(files) == 0 {
			t.Fatalf("no snapshot of partition %d under %s", n, dir4)
		}
	}
	again := startPartitioned(t, dir4, 4, now)
	waitAll(t, again, last4)
	st, err = again.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range st.Partitions {
		if ps.Snapshot == nil || ps.Snapshot.Loaded == "" || ps.ReplayFrom <= 1 {
			t.Errorf("partition %d did not start from its snapshot: %+v", ps.Partition, ps)
		}
	}
	compareAnswers(t, "P=4 restarted", want, answers(t, again, names))
	compareAnswers(t, "P=4 change feed after the restart (nothing twice)", feed1, feedByUser(t, again))
	again.close()

	// The stream holds 4 partitions: another P is refused at start.
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(partitionRules), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Start(ctx, Config{DataDir: dir4, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Partitions: 2,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if !errors.Is(err, bus.ErrPartitionsMismatch) || !strings.Contains(err.Error(), "holds 4 partitions") || !strings.Contains(err.Error(), "started with 2") {
		t.Fatalf("start with 2 partitions on a stream of 4: %v", err)
	}
}

// feedByUser flushes every partition's change feed and reads SEGD_CHANGES
// back: each user's changes in order, as "segment+" and "segment-".
func feedByUser(t *testing.T, ts *testServer) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range ts.srv.partitions() {
		if err := p.segAPI.feed.Flush(ctx); err != nil {
			t.Fatalf("change feed of %s not flushed: %v", p.part.name(), err)
		}
	}
	out := map[string]string{}
	for _, c := range readFeed(t, ts.js) {
		sign := "-"
		if c.enter {
			sign = "+"
		}
		out[c.user] += c.segment + sign + " "
	}
	return out
}

// TestServeAgainstReferenceWithPartitions is TestServeAgainstReference
// with four partitions: the reference evaluator over every user holds
// every answer while the clock crosses day boundaries, and after a
// restart.
func TestServeAgainstReferenceWithPartitions(t *testing.T) {
	t.Parallel()
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, loc))
	dataDir := t.TempDir()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() *testServer {
		return startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Location: loc, Clock: clock,
			Partitions: 4, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}
	ts := start()
	segs, err := LoadRules(rules.Options{}, rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	tick := func() {
		t.Helper()
		for _, p := range ts.srv.partitions() {
			if err := p.engine.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	ref := reference.New(segs, loc, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(7, 7))
	for step := range 12 {
		b := randomBatch(rng, clock.Now())
		ts.publish(t, b, fmt.Sprintf("batch-%d", step)) // mixed: every partition reads it
		ref.Apply(b, clock.Now())
		ts.compare(t, ref, segs, append(ref.Users(), "never-seen"))
		clock.Advance(time.Duration(rng.IntN(20)+1) * time.Hour)
		tick()
		ts.compare(t, ref, segs, ref.Users())
	}
	clock.Advance(8 * 24 * time.Hour)
	tick()
	ts.compare(t, ref, segs, ref.Users())

	ts.close()
	ts = start()
	info, err := ts.js.Stream(context.Background(), "SEGD_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	waitAll(t, ts, info.CachedInfo().State.LastSeq)
	ts.compare(t, ref, segs, ref.Users())
}

// TestPartitionsRebuildNewRulesAtStart: a rule added to the files while
// segd was stopped is rebuilt at start by every partition from its share
// of the log, beside the others loaded from the partitions' snapshots;
// then every answer is P=1's.
func TestPartitionsRebuildNewRulesAtStart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const users = 50
	stream := randomStream(11, users, 30, now)
	dir1, dir4 := t.TempDir(), t.TempDir()
	one := startPartitioned(t, dir1, 1, now)
	four := startPartitioned(t, dir4, 4, now)
	ctx := context.Background()
	var last1, last4 uint64
	for i, items := range stream {
		ack, err := client.PublishBatch(ctx, one.js, "segd.events.test", items, fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last1 = ack.Sequence
		if ack, err = client.PublishPartitioned(ctx, four.js, "segd.events.test", items, fmt.Sprint(i), 4); err != nil {
			t.Fatal(err)
		}
		last4 = max(last4, ack.Sequence)
	}
	waitAll(t, one, last1)
	waitAll(t, four, last4)
	one.close()
	four.close()

	more := partitionRules + `
  - id: late_payer
    did: {event: pay, count: ">= 2", last: 10d}
`
	one = startPartitionedRules(t, dir1, 1, now, more)
	four = startPartitionedRules(t, dir4, 4, now, more)
	waitAll(t, one, last1)
	waitAll(t, four, last4)
	st, err := four.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range st.Partitions {
		if ps.Snapshot == nil || ps.Snapshot.Loaded == "" || len(ps.Snapshot.Rebuilt) != 1 || ps.Snapshot.Rebuilt[0] != "late_payer" {
			t.Errorf("partition %d: snapshot %+v, want loaded with late_payer rebuilt", ps.Partition, ps.Snapshot)
		}
	}
	if n, err := one.client.SegmentCount(ctx, "late_payer"); err != nil || n == 0 {
		t.Fatalf("late_payer has %d members (%v): the stream should make some", n, err)
	}
	var names []string
	for i := range users {
		names = append(names, fmt.Sprintf("user-%d", i))
	}
	compareAnswers(t, "P=4 after a rebuild at start", answers(t, one, names), answers(t, four, names))
}

// TestPluginPutWithPartitions is TestPluginPutRebuildsFileRules with four
// partitions: a new plugin version rebuilds the segment that names it in
// every partition, which then serves the new version's members, also
// after a restart.
func TestPluginPutWithPartitions(t *testing.T) {
	t.Parallel()
	gt, ge := amountVersions(t)
	dir, dataDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "amount.wasm"), gt, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "amount.yaml"), []byte(amountMan), 0o644); err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules+"  - "+strings.ReplaceAll(strings.TrimSpace(pluginSeg), "\n", "\n    ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(seed uint64) *ruleTest {
		clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC))
		ts := startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
			PluginsDir: dir, Partitions: 4, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
		return &ruleTest{testServer: ts, rulesFile: rulesFile, rng: rand.New(rand.NewPCG(seed, 17))}
	}
	rt := start(51)
	ctx := context.Background()
	old := rt.expect(t, pluginSegGT)
	next := rt.expect(t, pluginSegGE)
	for i := range 6 {
		rt.pluginBatch(t, i%2 == 0)
	}
	rt.checkServed(t, old)
	if a, b := rt.refs[old].Members("big_plugin", rt.clock.Now()), rt.refs[next].Members("big_plugin", rt.clock.Now()); slices.Equal(a, b) {
		t.Fatalf("the two versions agree on the data (%v): the test does not discriminate", a)
	}
	p, err := rt.client.PushPlugin(ctx, "amount", ge, amountMan, "")
	if err != nil || !slices.Equal(p.Rebuilding, []string{"big_plugin"}) {
		t.Fatalf("push: %+v, %v", p, err)
	}
	rt.pluginBatch(t, true)
	rt.waitExact(t, next)
	rt.pluginBatch(t, true)
	rt.checkServed(t, next)

	rt.close()
	rt2 := start(52)
	rt2.refs, rt2.sets, rt2.step = rt.refs, rt.sets, rt.step
	if err := rt2.srv.WaitRebuilt(ctx); err != nil {
		t.Fatal(err)
	}
	rt2.waitSwapped(t, "big_plugin")
	rt2.checkServed(t, next)
}
