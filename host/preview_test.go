package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// TestSegmentPreview: a previewed definition holds exactly the users that a
// saved segment with the same rule holds (also when it reads saved
// segments), across a day boundary; bad definitions are 400s located in
// the definition; nothing of segd's state changes.
func TestSegmentPreview(t *testing.T) {
	t.Parallel()
	loc, _ := time.LoadLocation("America/New_York")
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 22, 30, 0, 0, loc))
	ts := startTestServer(t, t.TempDir(), clock, loc)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 9))
	for step := range 8 {
		ts.publish(t, randomBatch(rng, clock.Now()), fmt.Sprintf("p-%d", step))
		clock.Advance(time.Duration(rng.IntN(9)+1) * time.Hour)
		if err := ts.srv.Engine().Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	members := func(expr string) []string {
		t.Helper()
		r, err := ts.client.Query(ctx, expr, false, 10000)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(r.Users)
		return r.Users
	}
	nonEmpty := 0
	for _, c := range []struct{ definition, same string }{
		{"id: p_checkout\ndid: {event: checkout, count: \">= 3\", last: 7d}\n", "checkout_3x_7d"},
		{`{"id": "p_quiet", "did": {"event": "page_view", "count": "< 2", "last": "3d"}}`, "quiet_3d"},
		{"id: p_either\nany:\n  - in_segment: young_men\n  - all: [{in_segment: big_payer_2d}, {not: {in_segment: quiet_3d}}]\n", "young_men | big_payer_2d - quiet_3d"},
	} {
		want := members(c.same)
		if len(want) > 0 {
			nonEmpty++
		}
		got, err := ts.client.Preview(ctx, c.definition, 10000)
		if err != nil {
			t.Fatalf("%s: %v", c.same, err)
		}
		users := slices.Sorted(slices.Values(got.Users))
		if !slices.Equal(users, want) || got.Size != uint64(len(want)) {
			t.Errorf("preview of %s: %d users %v (size %d), saved: %v", c.same, len(users), users, got.Size, want)
		}
		if got.Seq != before.LastSeq || got.Messages == 0 {
			t.Errorf("preview of %s: seq %d after %d messages, segd is at %d", c.same, got.Seq, got.Messages, before.LastSeq)
		}
		if len(want) > 1 {
			few, err := ts.client.Preview(ctx, c.definition, 1)
			if err != nil || len(few.Users) != 1 || few.Size != uint64(len(want)) {
				t.Errorf("limit 1: %v, %v", few, err)
			}
		}
	}

	if nonEmpty < 3 {
		t.Fatalf("only %d of 3 compared segments have members: the data does not test the previews", nonEmpty)
	}

	for _, c := range []struct{ definition, want string }{
		{"id: p_bad\ndid: {event: checkout, last: 7d, bogus: 1}\n", "definition:2:"},
		{"id: young_men\nprofile: age < 30\n", "young_men"},
		{"id: p_ref\nin_segment: nope\n", "nope"},
		{"   ", "required"},
	} {
		_, err := ts.client.Preview(ctx, c.definition, 0)
		var ce *client.Error
		if !asClientError(err, &ce) || !client.IsBadRequest(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("definition %q: %v, want a 400 mentioning %q", c.definition, err, c.want)
		}
	}

	after, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastSeq != before.LastSeq || after.Events != before.Events || after.Users != before.Users {
		t.Errorf("a preview changed segd's state: %+v -> %+v", before, after)
	}
	list, err := ts.client.Segments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if strings.HasPrefix(s.ID, "p_") {
			t.Errorf("a previewed segment was saved: %s", s.ID)
		}
	}
}

// previewServer starts segd with the test rules and some applied batches of
// checkout, pay and page_view events (and profiles).
func previewServer(t *testing.T) *testServer {
	t.Helper()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	ts := startTestServer(t, t.TempDir(), clock, time.UTC)
	rng := rand.New(rand.NewPCG(7, 1))
	for step := range 3 {
		ts.publish(t, randomBatch(rng, clock.Now()), fmt.Sprintf("p-%d", step))
	}
	return ts
}

// TestPreviewReportsEvalErrors: a predicate that fails on every item (a
// missing property compared, an expression over expr's memory budget)
// answers with the count and a description of the failures, not a silent
// "0 users".
func TestPreviewReportsEvalErrors(t *testing.T) {
	t.Parallel()
	ts := previewServer(t)
	ctx := context.Background()
	for _, c := range []struct{ definition, want string }{
		{"id: p_nope\ndid: {event: checkout, where: \"props.nope > 3\", last: 30d}\n", "invalid operation"},
		{"id: p_budget\ndid: {event: checkout, where: 'len(repeat(\"x\", 100000000)) > 0', last: 30d}\n", "memory budget exceeded"},
		{"id: p_profile\nprofile: nope > 3\n", "invalid operation"},
	} {
		r, err := ts.client.Preview(ctx, c.definition, 10)
		if err != nil {
			t.Fatalf("%s: %v", c.definition, err)
		}
		if r.Size != 0 || r.EvalErrors == 0 || !strings.Contains(r.LastEvalError, c.want) {
			t.Errorf("%s: size %d, %d evaluation errors, last %q; want 0 users and errors mentioning %q",
				c.definition, r.Size, r.EvalErrors, r.LastEvalError, c.want)
		}
	}
	ok, err := ts.client.Preview(ctx, "id: p_fine\ndid: {event: checkout, where: \"(props.nope ?? 0) < 3\", last: 30d}\n", 10)
	if err != nil || ok.EvalErrors != 0 || ok.LastEvalError != "" || ok.Size == 0 {
		t.Errorf("a predicate that never fails: %+v, %v", ok, err)
	}
}

// TestPreviewRefusesBadDefinitions: an event segd has never seen, two YAML
// documents and an oversized definition are 400s that say what and where.
func TestPreviewRefusesBadDefinitions(t *testing.T) {
	t.Parallel()
	ts := previewServer(t)
	ctx := context.Background()
	for _, c := range []struct {
		definition string
		want       []string
	}{
		{"id: p_typo\ndid: {event: chekout, last: 7d}\n", []string{"definition:2:", `unknown event "chekout"`, "checkout"}},
		{"id: p_seq\nsequence:\n  steps:\n    - event: checkout\n    - event: paid\n  within: 1d\n  last: 7d\n", []string{"definition:5:", `"paid"`}},
		{"id: p_two\ndid: {event: checkout, last: 7d}\n---\nid: p_three\ndid: {event: pay, last: 7d}\n", []string{"one segment", "2 documents", "line 4"}},
		{"- id: p_list\n  did: {event: checkout, last: 7d}\n- id: p_list2\n  did: {event: pay, last: 7d}\n", []string{"one segment", "2"}},
		{"id: p_deep\n" + strings.Repeat("not: {", 120) + "did: {event: checkout, last: 7d}" + strings.Repeat("}", 120) + "\n", []string{"nests 123 levels deep", fmt.Sprint(bus.MaxPreviewDepth)}},
		{"id: p_big\ndescription: " + strings.Repeat("x", bus.MaxPreviewDefinitionBytes) + "\ndid: {event: checkout, last: 7d}\n", []string{"definition", fmt.Sprint(bus.MaxPreviewDefinitionBytes)}},
	} {
		_, err := ts.client.Preview(ctx, c.definition, 0)
		if !client.IsBadRequest(err) {
			t.Errorf("definition %.60q: %v, want a 400", c.definition, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("definition %.60q: %v, want it to mention %q", c.definition, err, w)
			}
		}
	}
	// One segment followed by an empty document is one segment.
	r, err := ts.client.Preview(ctx, "---\nid: p_one\ndid: {event: checkout, last: 30d}\n---\n", 10)
	if err != nil || r.ID != "p_one" || r.Size == 0 {
		t.Errorf("a segment between document markers: %+v, %v", r, err)
	}
}

// TestPreviewDeadlineStopsABatch: an expensive predicate stops at the
// preview's time limit, inside the batch it is judging, and the 503 says
// how far the replay got and which predicate took the time; a limit that
// the replay itself exceeds says the log is too long.
func TestPreviewDeadlineStopsABatch(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	ts := startTestServer(t, t.TempDir(), clock, time.UTC)
	for b := range 2 {
		var batch rules.Batch
		for i := range 5000 {
			batch.Events = append(batch.Events, rules.Event{User: fmt.Sprintf("u%d", i%50), Name: "checkout",
				Time: clock.Now().Add(-time.Duration(i) * time.Second).UnixMilli()})
		}
		ts.publish(t, batch, fmt.Sprintf("big-%d", b))
	}
	// About 6 ms an item (more under -race or load): each batch takes
	// over 10 s, and the limit leaves time to get to it on a busy machine.
	// It is near the most an expression may cost an item (rules: "Limits
	// of expressions"); a nested loop over a range is refused.
	const slow = "all(1..10000, {# > 0 && # > -1 && # > -2 && # > -3 && # > -4 && # > -5 && # > -6 && # > -7 && # > -8 && # > -9 && # > -10 && # > -11 && # > -12 && # > -13 && # > -14 && # > -15})"
	def := "id: p_slow\ndid: {event: checkout, where: '" + slow + "', last: 30d}\n"
	const limit = 3 * time.Second
	t0 := time.Now()
	_, err := ts.srv.previewWithin(context.Background(), api.SegmentPreviewRequest{Definition: def, Limit: 10}, limit)
	took := time.Since(t0)
	var be *bus.Error
	if !errors.As(err, &be) || be.Code != api.CodeUnavailable {
		t.Fatalf("an expensive predicate: %v, want a 503", err)
	}
	for _, w := range []string{"time limit of 3s", "stream sequence", "events/s", "p_slow", slow, "too expensive"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the 503 does not mention %q: %v", w, err)
		}
	}
	t.Logf("the 503: %v", err)
	// The batch in progress stopped inside it: fewer of its 5000 items
	// were judged (judging them all takes minutes). The time bound is
	// only a backstop, loose for a loaded machine under -race.
	var judged int
	if m := regexp.MustCompile(`\((\d+) items judged`).FindStringSubmatch(err.Error()); m == nil {
		t.Errorf("the 503 does not say how many items were judged: %v", err)
	} else if judged, _ = strconv.Atoi(m[1]); judged >= 5000 {
		t.Errorf("%d items judged: the batch in progress did not stop", judged)
	}
	if took > limit+60*time.Second {
		t.Errorf("the preview answered %v after it started, with a limit of %v: the batch in progress did not stop", took, limit)
	}

	_, err = ts.srv.previewWithin(context.Background(), api.SegmentPreviewRequest{Definition: "id: p_cheap\ndid: {event: checkout, last: 30d}\n", Limit: 10}, time.Nanosecond)
	if !errors.As(err, &be) || be.Code != api.CodeUnavailable || !strings.Contains(err.Error(), "too long to replay") {
		t.Errorf("a replay over its limit: %v, want a 503 saying the log is too long", err)
	}
	// Nothing is left running: the next preview gets the slot at once.
	if _, err := ts.client.Preview(context.Background(), "id: p_cheap\ndid: {event: checkout, last: 30d}\n", 10); err != nil {
		t.Errorf("a preview after those: %v", err)
	}
}

// TestPreviewReleasesPluginPools: each preview with plugin parameters of
// its own starts a warm pool of instances for them; when the preview ends
// the pool goes, and the rule's own pool stays. The answers are exact.
func TestPreviewReleasesPluginPools(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The plugins package's test guest: amount > params.min.
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(pluginDir, "amount.wasm"), "./plugins/testdata/amount")
	build.Dir = ".."
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("id: big\ndid: {event: pay, where: {plugin: amount, params: {min: 50}}, last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	ts := startServer(t, Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile},
		PluginsDir: pluginDir, Clock: clock, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	var batch rules.Batch
	for i := range 100 {
		batch.Events = append(batch.Events, rules.Event{User: fmt.Sprintf("u%02d", i), Name: "pay",
			Time: clock.Now().Add(-time.Hour).UnixMilli(), Props: map[string]any{"amount": float64(i)}})
	}
	ts.publish(t, batch, "pays")
	base, _ := ts.srv.plugins.Status("amount")
	ctx := context.Background()
	for i := range 8 {
		min := 10 * i
		def := fmt.Sprintf("id: p_min\ndid: {event: pay, where: {plugin: amount, params: {min: %d}}, last: 7d}\n", min)
		r, err := ts.client.Preview(ctx, def, 1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Size != uint64(99-min) || r.Error != "" {
			t.Fatalf("min %d: %d users (%q), want %d", min, r.Size, r.Error, 99-min)
		}
	}
	st, _ := ts.srv.plugins.Status("amount")
	if st.Pools != base.Pools || st.Instances > base.Instances {
		t.Fatalf("after 8 previews with parameters of their own: %d pools, %d instances; before: %d, %d",
			st.Pools, st.Instances, base.Pools, base.Instances)
	}
	if n, err := ts.client.SegmentCount(ctx, "big"); err != nil || n != 49 {
		t.Fatalf("the rule's segment: %d, %v", n, err)
	}
}
