package host

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// ruleTest is a server with rule files, and references for the rule set
// as it was and as the rules admin API changes it: each gets every batch.
type ruleTest struct {
	*testServer
	rulesFile string
	refs      []*reference.Evaluator
	sets      [][]*rules.Segment
	rng       *rand.Rand
	step      int
}

func startRuleTest(t *testing.T, dataDir string, gate chan struct{}) *ruleTest {
	t.Helper()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC))
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), ruleRebuildGate: gate})
	return &ruleTest{testServer: ts, rulesFile: rulesFile, rng: rand.New(rand.NewPCG(11, 13))}
}

// expect adds a reference for the rule files with defs (KV) above them.
// Call it before any batch: references see every batch.
func (rt *ruleTest) expect(t *testing.T, defs ...string) int {
	t.Helper()
	var kv []rules.File
	for i, d := range defs {
		kv = append(kv, rules.File{Name: fmt.Sprint("def", i), Data: []byte(d)})
	}
	set, _, err := rules.CompileLayers([][]rules.File{kv, {{Name: "rules.yaml", Data: []byte(testRules)}}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt.sets = append(rt.sets, set.Segments)
	rt.refs = append(rt.refs, reference.New(set.Segments, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays))
	return len(rt.refs) - 1
}

// batch publishes a random batch, applies it to every reference and waits
// until segd has applied it.
func (rt *ruleTest) batch(t *testing.T) {
	t.Helper()
	b := randomBatch(rt.rng, rt.clock.Now())
	rt.step++
	rt.publish(t, b, fmt.Sprintf("rules-batch-%d", rt.step))
	for _, r := range rt.refs {
		r.Apply(b, rt.clock.Now())
	}
}

// waitServing waits until segment serves revision rev.
func (rt *ruleTest) waitServing(t *testing.T, segment string, rev uint64) *api.Rule {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := rt.client.GetRule(context.Background(), segment)
		if err == nil && r.Serving == rev && r.State == "active" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s does not serve revision %d in time: %+v, %v", segment, rev, r, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// waitNext waits until segment shows revision rev rebuilding beside the
// one served.
func (rt *ruleTest) waitNext(t *testing.T, segment string, rev uint64) api.SegmentInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := rt.client.Segments(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range list {
			if info.ID == segment && info.NextRevision != nil && info.NextRevision.Revision == rev && info.NextRevision.Rebuild != nil {
				return info
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s does not rebuild revision %d in time: %+v", segment, rev, list)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// checkServed compares what segd serves for the segments of reference i
// (those named in skip excepted) with it.
func (rt *ruleTest) checkServed(t *testing.T, i int, skip ...string) {
	t.Helper()
	ctx := context.Background()
	now := rt.clock.Now()
	for _, s := range rt.sets[i] {
		if slices.Contains(skip, s.ID) {
			continue
		}
		want := rt.refs[i].Members(s.ID, now)
		var got []string
		err := rt.client.EachMember(ctx, s.ID, 1000, func(users []string) error {
			got = append(got, users...)
			return nil
		})
		if err != nil {
			t.Fatalf("segment %s: %v", s.ID, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("segment %s serves %v; the reference (set %d) has %v", s.ID, got, i, want)
		}
	}
}

const (
	bigPayerV2 = "id: big_payer_2d\ndid: {event: pay, where: \"(props.amount ?? 0) >= 80\", last: 3d}\n"
	bigPayerV3 = "id: big_payer_2d\ndid: {event: pay, count: \">= 2\", last: 4d}\n"
	payTwice   = "id: pay_twice\ndid: {event: pay, count: \">= 2\", last: 5d}\n"
	payingMen  = "id: paying_men\nall:\n  - in_segment: pay_twice\n  - profile: gender == \"male\"\n"
)

// TestRulePutLive changes a segment and adds two while batches flow: the
// changed one serves its previous revision's exact membership while the
// new one rebuilds, a new one answers 503; a second put supersedes the
// first's rebuild; after the swap every segment is exact against the
// reference, and the change feed, replayed, equals the new membership
// with no enter or exit twice.
func TestRulePutLive(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	rt := startRuleTest(t, t.TempDir(), gate)
	ctx := context.Background()
	old := rt.expect(t)
	v2 := rt.expect(t, bigPayerV2)
	v3 := rt.expect(t, bigPayerV3, payTwice, payingMen)
	for range 8 {
		rt.batch(t)
	}
	rt.checkServed(t, old)

	p2, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: bigPayerV2, Author: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	info := rt.waitNext(t, "big_payer_2d", p2.Revision)
	if info.Status != "active" || info.Revision != 0 {
		t.Fatalf("while revision %d rebuilds, big_payer_2d is %+v; want the file's definition served", p2.Revision, info)
	}
	// Ingest goes on; the previous definition stays exact.
	for range 3 {
		rt.batch(t)
		rt.checkServed(t, old)
	}
	// A newer revision supersedes the rebuild in progress.
	p3, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: bigPayerV3, Author: "bo", ExpectedRevision: &p2.Revision})
	if err != nil {
		t.Fatal(err)
	}
	rt.waitNext(t, "big_payer_2d", p3.Revision)
	rt.checkServed(t, old)
	if _, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice}); err != nil {
		t.Fatal(err)
	}
	pm, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payingMen})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.client.SegmentCount(ctx, "pay_twice"); !client.IsUnavailable(err) || !strings.Contains(err.Error(), "rebuilt") {
		t.Fatalf("a new segment before its rebuild: %v, want 503 rebuilding", err)
	}
	rt.batch(t)
	close(gate)
	rt.waitServing(t, "big_payer_2d", p3.Revision)
	rt.waitServing(t, "paying_men", pm.Revision)
	rt.checkServed(t, v3)
	for range 3 {
		rt.batch(t)
		rt.checkServed(t, v3)
	}
	_ = v2
	want := rt.refs[v3].Members("big_payer_2d", rt.clock.Now())
	got := replayFeed(t, rt.testServer, "big_payer_2d", want)
	if len(got) != len(want) {
		t.Fatalf("the feed replays to %d members, want %d", len(got), len(want))
	}
}

// replayFeed reads a segment's change feed from its start until, replayed
// onto an empty set, it equals want; an enter of a member or an exit of a
// non-member fails the test (a change announced twice).
func replayFeed(t *testing.T, ts *testServer, segment string, want []string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	members := map[string]bool{}
	var bad error
	equal := make(chan struct{})
	closed := false
	c, err := client.ConsumeChanges(ctx, ts.js, client.ChangeConsumerOptions{Segments: []string{segment}},
		func(m client.ChangeMsg) error {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case m.Change.Change == api.ChangeEnter && members[m.User]:
				bad = fmt.Errorf("%s entered %s twice (message %d)", m.User, segment, m.StreamSeq)
			case m.Change.Change == api.ChangeExit && !members[m.User]:
				bad = fmt.Errorf("%s left %s without entering (message %d)", m.User, segment, m.StreamSeq)
			}
			if m.Change.Change == api.ChangeEnter {
				members[m.User] = true
			} else {
				delete(members, m.User)
			}
			if !closed && len(members) == len(want) && !slices.ContainsFunc(want, func(u string) bool { return !members[u] }) {
				closed = true
				close(equal)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	select {
	case <-equal:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the feed of %s replays to %v, want %v (%v)", segment, members, want, bad)
	}
	c.Stop()
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatal(bad)
	}
	return members
}

// TestRuleRefusals: a definition that does not compile is refused with
// its located errors and the running revision stays; an expected revision
// another editor moved on from is a 409; a segment another reads cannot be
// deleted; history keeps every revision's text.
func TestRuleRefusals(t *testing.T) {
	t.Parallel()
	rt := startRuleTest(t, t.TempDir(), nil)
	ctx := context.Background()
	old := rt.expect(t)
	for range 4 {
		rt.batch(t)
	}
	p1, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice, Author: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	rt.waitServing(t, "pay_twice", p1.Revision)

	bad := "id: pay_twice\ndid: {event: pay, count: \">= 2\", last: 5d, colour: red}\n"
	_, err = rt.client.PutRule(ctx, api.RulePutRequest{Definition: bad})
	if !client.IsBadRequest(err) || !strings.Contains(err.Error(), "definition:2:") {
		t.Fatalf("a bad definition: %v, want a 400 naming definition:2", err)
	}
	v, err := rt.client.ValidateRules(ctx, api.RuleValidateRequest{Files: []api.RuleFile{{Name: "a.yaml", Data: bad}, {Name: "b.yaml", Data: "id: x\nall: [in_segment: nowhere]\n"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Valid || len(v.Errors) != 2 || v.Errors[0].File != "a.yaml" || v.Errors[0].Line != 2 || v.Errors[1].File != "b.yaml" || v.Errors[1].Segment != "x" {
		t.Fatalf("validate: %+v", v)
	}
	if r, err := rt.client.GetRule(ctx, "pay_twice"); err != nil || r.Revision != p1.Revision || r.Serving != p1.Revision {
		t.Fatalf("after a refused put: %+v, %v", r, err)
	}

	stale := uint64(0)
	if _, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice, ExpectedRevision: &stale}); !client.IsConflict(err) {
		t.Fatalf("create over an existing definition: %v, want 409", err)
	}
	p2, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payingMen, Author: "bo"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.client.DeleteRule(ctx, api.RuleRequest{Segment: "pay_twice"})
	if !client.IsConflict(err) || !strings.Contains(err.Error(), `"paying_men"`) {
		t.Fatalf("deleting a segment another reads: %v, want 409 naming paying_men", err)
	}
	if _, err := rt.client.DeleteRule(ctx, api.RuleRequest{Segment: "young_men"}); !client.IsBadRequest(err) {
		t.Fatalf("deleting a file's segment: %v, want 400", err)
	}
	rt.waitServing(t, "paying_men", p2.Revision)
	d, err := rt.client.DeleteRule(ctx, api.RuleRequest{Segment: "paying_men", ExpectedRevision: &p2.Revision})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := rt.client.SegmentCount(ctx, "paying_men"); client.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("paying_men is still served after its delete")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	h, err := rt.client.RuleHistory(ctx, "paying_men", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Revisions) != 2 || h.Revisions[0].Definition != payingMen || h.Revisions[0].Author != "bo" ||
		!h.Revisions[1].Deleted || h.Revisions[1].Revision != d.Revision {
		t.Fatalf("history: %+v", h)
	}
	rt.checkServed(t, old)
	// A preview compiles beside the API's definitions: it may read them,
	// and cannot take their ids.
	if _, err := rt.client.Request(ctx, api.SubjectSegmentPreview, []byte(`{"definition":"id: p\nall: [in_segment: pay_twice]\n"}`)); err != nil {
		t.Fatalf("a preview reading an API segment: %v", err)
	}
	if _, err := rt.client.Request(ctx, api.SubjectSegmentPreview, []byte(`{"definition":"id: pay_twice\ndid: {event: pay, last: 1d}\n"}`)); !client.IsBadRequest(err) {
		t.Fatalf("a preview taking an API segment's id: %v, want 400", err)
	}
}

// TestRuleRestartMidRebuild stops segd while a changed definition is being
// rebuilt; the next start rebuilds it from the log (the KV definition
// enters the snapshot fingerprints) and ends exact.
func TestRuleRestartMidRebuild(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	gate := make(chan struct{})
	rt := startRuleTest(t, dataDir, gate)
	ctx := context.Background()
	v3 := rt.expect(t, bigPayerV3, payTwice)
	old := rt.expect(t)
	for range 6 {
		rt.batch(t)
	}
	p, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: bigPayerV3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice}); err != nil {
		t.Fatal(err)
	}
	rt.waitNext(t, "big_payer_2d", p.Revision)
	rt.batch(t)
	rt.checkServed(t, old)
	rt.close()

	ts2 := startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rt.rulesFile}, Clock: rt.clock,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err := ts2.srv.WaitRebuilt(ctx); err != nil {
		t.Fatal(err)
	}
	rt.testServer = ts2
	rt.waitServing(t, "big_payer_2d", p.Revision)
	rt.checkServed(t, v3)
	rt.batch(t)
	rt.checkServed(t, v3)
}

// TestRulePutUnderIngest changes a segment and adds one while a publisher
// sends batches without pause, before, during and after the rebuild
// (which waits for the first 20 live batches): nothing is lost or doubled.
// Every segment is exact against the reference at the end, and the
// change feeds, replayed, equal the memberships with no change twice.
func TestRulePutUnderIngest(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	rt := startRuleTest(t, t.TempDir(), gate)
	ctx := context.Background()
	v3 := rt.expect(t, bigPayerV3, payTwice)
	for range 150 {
		rt.batch(t)
	}
	p, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: bigPayerV3})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		sent    []rules.Batch
		lastSeq uint64
		pubErr  error
	)
	stop, done, twenty := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(5, 8))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b := randomBatch(rng, rt.clock.Now())
			ack, err := client.PublishBatch(ctx, rt.js, "segd.events.test", batchItems(b), fmt.Sprint("live-", i))
			mu.Lock()
			if err != nil {
				pubErr = err
				mu.Unlock()
				return
			}
			sent, lastSeq = append(sent, b), ack.Sequence
			mu.Unlock()
			if i == 19 {
				close(twenty)
			}
		}
	}()
	select {
	case <-twenty:
	case <-done:
		t.Fatalf("the publisher stopped: %v", pubErr)
	}
	close(gate)
	rt.waitServing(t, "big_payer_2d", p.Revision)
	rt.waitServing(t, "pay_twice", p2.Revision)
	close(stop)
	<-done
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	rt.waitApplied(t, lastSeq)
	for _, b := range sent {
		for _, r := range rt.refs {
			r.Apply(b, rt.clock.Now())
		}
	}
	t.Logf("%d batches published live around the rebuild", len(sent))
	rt.checkServed(t, v3)
	for _, seg := range []string{"big_payer_2d", "pay_twice"} {
		replayFeed(t, rt.testServer, seg, rt.refs[v3].Members(seg, rt.clock.Now()))
	}
}

// batchItems is a batch as producers send it.
func batchItems(b rules.Batch) []api.Item {
	items := make([]api.Item, 0, len(b.Events)+len(b.Profiles))
	for _, e := range b.Events {
		items = append(items, api.Item{User: e.User, Event: e.Name, Time: time.UnixMilli(e.Time).Format(time.RFC3339Nano), Props: e.Props})
	}
	for _, p := range b.Profiles {
		items = append(items, api.Item{User: p.User, Profile: p.Attrs})
	}
	return items
}

// TestRuleDeleteDuringRebuild deletes a segment while its first revision
// is being rebuilt: the rebuild is dropped, the segment is unknown (404)
// and stays so once the log is read; a new put of it is served.
func TestRuleDeleteDuringRebuild(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	rt := startRuleTest(t, t.TempDir(), gate)
	ctx := context.Background()
	v := rt.expect(t, payTwice)
	for range 3 {
		rt.batch(t)
	}
	p, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice})
	if err != nil {
		t.Fatal(err)
	}
	rt.waitNext(t, "pay_twice", p.Revision)
	if _, err := rt.client.DeleteRule(ctx, api.RuleRequest{Segment: "pay_twice"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := rt.client.SegmentCount(ctx, "pay_twice")
		if client.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pay_twice after its delete: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	close(gate)
	p2, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: payTwice, ExpectedRevision: new(uint64)})
	if err != nil {
		t.Fatal(err)
	}
	rt.waitServing(t, "pay_twice", p2.Revision)
	rt.batch(t)
	rt.checkServed(t, v)
}

// TestRuleWrittenToBucket: a definition written to SEGD_RULES by another
// writer (another segd, `nats kv put`) is applied like a put, one that
// does not compile is left out, and a delete there removes the segment.
func TestRuleWrittenToBucket(t *testing.T) {
	t.Parallel()
	rt := startRuleTest(t, t.TempDir(), nil)
	ctx := context.Background()
	v := rt.expect(t, payTwice)
	old := rt.expect(t)
	for range 3 {
		rt.batch(t)
	}
	kv, err := rt.js.KeyValue(ctx, "SEGD_RULES")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "broken", []byte("id: broken\ndid: {event: pay}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "other", []byte(payTwice)); err != nil { // the key is not its id
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "pay_twice", []byte(payTwice)) // as `nats kv put` writes it
	if err != nil {
		t.Fatal(err)
	}
	rt.waitServing(t, "pay_twice", rev)
	rt.batch(t)
	rt.checkServed(t, v)
	for _, id := range []string{"broken", "other"} {
		if _, err := rt.client.SegmentCount(ctx, id); !client.IsNotFound(err) {
			t.Fatalf("%s, which does not compile or is not its key's: %v, want 404", id, err)
		}
	}
	if err := kv.Delete(ctx, "pay_twice"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := rt.client.SegmentCount(ctx, "pay_twice"); client.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pay_twice is still served after its key was deleted")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	rt.checkServed(t, old)
	// The keys that were left out do not stop a restart.
	if _, err := kv.Put(ctx, "pay_twice", []byte(payTwice)); err != nil {
		t.Fatal(err)
	}
	rt.close()
	ts2 := startServer(t, Config{DataDir: rt.cfg.DataDir, Listen: "127.0.0.1:0", RulePaths: []string{rt.rulesFile}, Clock: rt.clock,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err := ts2.srv.WaitRebuilt(ctx); err != nil {
		t.Fatal(err)
	}
	rt.testServer = ts2
	rt.checkServed(t, v)
}

// TestRulePutReadsItsWindow: a put after days of events rebuilds the
// segment from the first message its window reaches, not the stream's
// first (rule.get's last_rebuild says which), and is exact against the
// reference; a segment whose window reaches the whole log reads it all.
func TestRulePutReadsItsWindow(t *testing.T) {
	t.Parallel()
	rt := startRuleTest(t, t.TempDir(), nil)
	ctx := context.Background()
	const recent = "id: recent_payers\ndid: {event: pay, count: \">= 2\", last: 24h}\n"
	const month = "id: month_payers\ndid: {event: pay, count: \">= 2\", last: 30d}\n"
	ref := rt.expect(t, recent, month)
	for range 16 {
		rt.clock.Advance(6 * time.Hour)
		rt.batch(t)
	}
	total := rt.srv.Engine().Status().LastSeq
	for _, c := range []struct {
		def, id string
		whole   bool
	}{{recent, "recent_payers", false}, {month, "month_payers", true}} {
		p, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: c.def})
		if err != nil {
			t.Fatal(err)
		}
		rt.waitServing(t, c.id, p.Revision)
		var lr *api.RebuildSummary
		waitCond(t, c.id+": last_rebuild of the put's revision", func() bool {
			r, err := rt.client.GetRule(ctx, c.id)
			if err == nil && r.LastRebuild != nil && r.LastRebuild.Revision == p.Revision {
				lr = r.LastRebuild
			}
			return lr != nil
		})
		if lr == nil || lr.Revision != p.Revision || lr.ToSeq != total {
			t.Fatalf("%s: last_rebuild %+v, want revision %d to seq %d", c.id, lr, p.Revision, total)
		}
		if c.whole && (lr.FromSeq != 1 || lr.Messages != total) || !c.whole && (lr.FromSeq <= total/2 || lr.Messages >= total/2) {
			t.Fatalf("%s: read from seq %d, %d messages of %d", c.id, lr.FromSeq, lr.Messages, total)
		}
	}
	rt.checkServed(t, ref)
	rt.clock.Advance(5 * time.Hour)
	rt.batch(t)
	rt.checkServed(t, ref)
}
