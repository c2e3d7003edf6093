package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/plugins"
	"github.com/segd/segd/rules"
)

// amountWasm builds the amount plugin (examples/plugins/amount-wat) and a
// version of it that traps on an event whose amount is exactly 13: a
// plugin that cannot judge some batch, as a buggy one does.
func amountWasm(t *testing.T) (good, trap []byte) {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		if os.Getenv("SEGD_REQUIRE_WABT") == "1" {
			t.Fatalf("SEGD_REQUIRE_WABT=1 but wat2wasm is missing: %v", err)
		}
		t.Skipf("wat2wasm not found (Debian package wabt): %v", err)
	}
	src, err := os.ReadFile("../examples/plugins/amount-wat/amount.wat")
	if err != nil {
		t.Fatal(err)
	}
	const value = `(f64.load (i32.add (local.get $values) (i32.shl (local.get $i) (i32.const 3))))`
	anchor := `(if (f64.gt ` + value
	if strings.Count(string(src), anchor) != 1 {
		t.Fatalf("amount.wat changed: %q not found once", anchor)
	}
	trapSrc := strings.Replace(string(src), anchor,
		`(if (f64.eq `+value+` (f64.const 13)) (then unreachable))`+"\n            "+anchor, 1)
	dir := t.TempDir()
	build := func(name, text string) []byte {
		in, out := filepath.Join(dir, name+".wat"), filepath.Join(dir, name+".wasm")
		if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command("wat2wasm", in, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm: %v\n%s", err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	return build("good", string(src)), build("trap", trapSrc)
}

// recoveryRules judge big spenders through the amount plugin, a segment
// reading them, and the same condition as an expression (which no plugin
// failure may touch).
const recoveryRules = `
segments:
  - id: big_plugin
    did: {event: checkout, where: {plugin: amount, params: {min: 100}}, last: 7d}
  - id: big_reader
    all: [{in_segment: big_plugin}]
  - id: big_expr
    did: {event: checkout, where: 'type(props.amount) == "float" && props.amount > 100', last: 7d}
`

// referenceRules are recoveryRules as the reference evaluator runs them:
// the plugin's condition as an expression.
const referenceRules = `
segments:
  - id: big_plugin
    did: {event: checkout, where: 'type(props.amount) == "float" && props.amount > 100', last: 7d}
  - id: big_reader
    all: [{in_segment: big_plugin}]
`

// recoveryWorld is a segd with the amount plugin, fed checkouts that it
// also hands the reference evaluator.
type recoveryWorld struct {
	dir, plugins, rules string
	now                 time.Time
	clock               *engine.ManualClock
	ref                 *reference.Evaluator
	rng                 *rand.Rand
	users               []string
	batches             int
}

func newRecoveryWorld(t *testing.T, plugin []byte) *recoveryWorld {
	t.Helper()
	w := &recoveryWorld{dir: t.TempDir(), now: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(11, 11))}
	w.clock = engine.NewManualClock(w.now)
	w.plugins, w.rules = filepath.Join(w.dir, "plugins"), filepath.Join(w.dir, "rules.yaml")
	if err := os.MkdirAll(w.plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	w.install(t, "amount", plugin)
	if err := os.WriteFile(w.rules, []byte(recoveryRules), 0o644); err != nil {
		t.Fatal(err)
	}
	segs, err := rules.Compile([]rules.File{{Name: "ref.yaml", Data: []byte(referenceRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.ref = reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, 90)
	for i := range 30 {
		w.users = append(w.users, fmt.Sprintf("u%02d", i))
	}
	return w
}

func (w *recoveryWorld) install(t *testing.T, name string, wasm []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(w.plugins, name+".wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.plugins, name+".yaml"), []byte("props: [amount]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (w *recoveryWorld) start(t *testing.T) *testServer {
	t.Helper()
	return startServer(t, Config{DataDir: filepath.Join(w.dir, "data"), Listen: "127.0.0.1:0", RulePaths: []string{w.rules},
		PluginsDir: w.plugins, Clock: w.clock, SnapshotInterval: -1, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
}

// publish sends a batch of checkouts; with trap, one of them has the
// amount the trapping version cannot judge.
func (w *recoveryWorld) publish(t *testing.T, ts *testServer, trap bool) {
	t.Helper()
	var b rules.Batch
	for i := range 60 {
		amount := float64(w.rng.IntN(200))
		if amount == 13 {
			amount = 14
		}
		if trap && i == 30 {
			amount = 13
		}
		b.Events = append(b.Events, rules.Event{User: w.users[w.rng.IntN(len(w.users))], Name: "checkout",
			Time: w.now.Add(-time.Duration(w.rng.IntN(9*24)) * time.Hour).UnixMilli(), Props: map[string]any{"amount": amount}})
	}
	w.batches++
	ts.publish(t, b, fmt.Sprintf("b%d", w.batches))
	w.ref.Apply(b, w.clock.Now())
}

// requireStale checks that a segment is not served as exact: every
// membership request about it is a 503 naming it, member.segments leaves
// it out and says so, and segment.list and status show it stale.
func requireStale(t *testing.T, ts *testServer, id string) api.StaleStatus {
	t.Helper()
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != api.CodeUnavailable || !strings.Contains(err.Error(), id) ||
			!strings.Contains(err.Error(), "stale") && !strings.Contains(err.Error(), "failed") && !strings.Contains(err.Error(), "rebuil") {
			t.Fatalf("%s of %s: %v, want a 503 saying it is stale", what, id, err)
		}
	}
	_, err := ts.client.IsMember(ctx, "u01", id)
	check("member.check", err)
	_, err = ts.client.SegmentCount(ctx, id)
	check("segment.count", err)
	_, err = ts.client.Members(ctx, id, "", 10)
	check("segment.members", err)
	var rep api.MemberSegmentsReply
	msg, err := ts.nc.Request(api.SubjectMemberSegments, []byte(`{"user":"u01"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rep.Segments, id) || !slices.Contains(rep.Unavailable, id) {
		t.Fatalf("member.segments %+v: %s not marked unavailable", rep, id)
	}
	if i := slices.IndexFunc(rep.States, func(s api.SegmentState) bool { return s.Segment == id }); i < 0 ||
		!slices.Contains([]string{api.StateStale, api.StateFailed, api.StateRebuilding}, rep.States[i].State) || rep.AsOf == nil {
		t.Fatalf("member.segments %+v: %s's state is not stale, failed or rebuilding", rep, id)
	}
	st, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Stale {
		if s.Segment == id {
			return s
		}
	}
	t.Fatalf("status does not list %s as stale: %+v", id, st.Stale)
	return api.StaleStatus{}
}

// segmentInfo is a segment's segment.list entry.
func segmentInfo(t *testing.T, ts *testServer, id string) api.SegmentInfo {
	t.Helper()
	list, err := ts.client.Segments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("segment.list has no %s", id)
	return api.SegmentInfo{}
}

// waitFor polls segment.list until cond holds for the segment.
func waitFor(t *testing.T, ts *testServer, id, what string, cond func(api.SegmentInfo) bool) api.SegmentInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info := segmentInfo(t, ts, id)
		if cond(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not happen in time: %+v (stale %+v)", id, what, info, info.Stale)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// requireExact compares the plugin's segments with the reference over
// every event sent, user by user, and with the same rule as an expression.
func (w *recoveryWorld) requireExact(t *testing.T, ts *testServer) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"big_plugin", "big_reader"} {
		got, err := allMembers(ctx, ts, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		want := w.ref.Members(id, w.clock.Now())
		if !slices.Equal(got, want) {
			t.Fatalf("%s = %v\nthe reference says %v", id, got, want)
		}
		if len(want) == 0 || len(want) == len(w.users) {
			t.Fatalf("%s has %d of %d users: the data does not discriminate", id, len(want), len(w.users))
		}
		if info := segmentInfo(t, ts, id); info.Status != "active" || info.Stale != nil {
			t.Fatalf("%s: %+v", id, info)
		}
	}
	viaExpr, err := allMembers(ctx, ts, "big_expr")
	if err != nil || !slices.Equal(viaExpr, w.ref.Members("big_plugin", w.clock.Now())) {
		t.Fatalf("big_expr = %v, %v", viaExpr, err)
	}
}

// allMembers pages through a segment's members, sorted.
func allMembers(ctx context.Context, ts *testServer, id string) ([]string, error) {
	out := []string{}
	err := ts.client.EachMember(ctx, id, 0, func(users []string) error {
		out = append(out, users...)
		return nil
	})
	slices.Sort(out)
	return out, err
}

// TestPluginFailureRecovers: a real WASM plugin over JetStream traps on a
// batch. Its segment (and the one reading it) is stale: not served (503)
// while every other rule goes on. A later batch it judges triggers a
// rebuild from the log, which fails on the same batch and backs off; a new
// version of the plugin is then rebuilt in beside live ingest, and the
// segments end equal to the reference over all events, with no restart.
func TestPluginFailureRecovers(t *testing.T) {
	t.Parallel()
	good, trap := amountWasm(t)
	w := newRecoveryWorld(t, trap)
	ts := w.start(t)
	defer ts.close()
	w.publish(t, ts, false)
	w.requireExact(t, ts)

	w.publish(t, ts, true)
	for _, id := range []string{"big_plugin", "big_reader"} {
		requireStale(t, ts, id)
	}
	if info := segmentInfo(t, ts, "big_plugin"); info.Status != api.SegmentStale || !strings.Contains(info.Error, "unreachable") ||
		info.Stale == nil || info.Stale.Seq != 2 || !slices.Equal(info.Stale.Plugins, []string{"amount"}) {
		t.Fatalf("big_plugin after the trap: %+v (stale %+v)", info, info.Stale)
	}
	if info := segmentInfo(t, ts, "big_expr"); info.Status != "active" {
		t.Fatalf("big_expr: %+v: another rule's failure touched it", info)
	}

	// The plugin judges the next batch: segd rebuilds, which meets the same
	// batch and fails again; the segment stays stale and backs off.
	w.publish(t, ts, false)
	info := waitFor(t, ts, "big_plugin", "a failed rebuild", func(i api.SegmentInfo) bool {
		return i.Stale != nil && i.Stale.Rebuilds == 1 && i.Status == api.SegmentStale
	})
	if info.Stale.NextRebuild == "" || !strings.Contains(info.Error, "unreachable") {
		t.Fatalf("after a failed rebuild: %+v", info.Stale)
	}
	requireStale(t, ts, "big_plugin")
	requireStale(t, ts, "big_reader")

	// A new version that judges every batch: rebuilt beside live ingest.
	if err := ts.srv.plugins.Load(context.Background(), "amount", good, plugins.Manifest{Props: []string{"amount"}}); err != nil {
		t.Fatal(err)
	}
	w.publish(t, ts, false)
	for _, id := range []string{"big_plugin", "big_reader"} {
		waitFor(t, ts, id, "recovery", func(i api.SegmentInfo) bool { return i.Status == "active" })
	}
	w.requireExact(t, ts)
	w.publish(t, ts, true) // the new version judges amount 13
	w.requireExact(t, ts)
}

// TestStaleSegmentSurvivesRestart: the snapshot written at shutdown while
// a segment is stale does not make it exact on the next start: with the
// same plugin it is rebuilt, fails again and stays stale; with a fixed
// plugin it is rebuilt and exact.
func TestStaleSegmentSurvivesRestart(t *testing.T) {
	t.Parallel()
	good, trap := amountWasm(t)
	w := newRecoveryWorld(t, trap)
	ts := w.start(t)
	w.publish(t, ts, false)
	w.publish(t, ts, true)
	requireStale(t, ts, "big_plugin")
	ts.close()

	ts = w.start(t)
	if err := ts.srv.WaitRebuilt(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := requireStale(t, ts, "big_plugin"); !strings.Contains(st.Error, "unreachable") {
		t.Fatalf("after a restart: %+v", st)
	}
	requireStale(t, ts, "big_reader")
	ts.close()

	w.install(t, "amount", good)
	ts = w.start(t)
	defer ts.close()
	if err := ts.srv.WaitRebuilt(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.requireExact(t, ts)
}

// TestPluginFingerprintNamesOnlyItsPlugins: a segment's fingerprint holds
// the versions of the plugins its rule names, not of every plugin, nor is
// it decided by the word "plugin" in its text. Adding an unrelated plugin
// rebuilds nothing at the next start; a new version of a plugin rebuilds
// exactly the segments that name it and those that read them.
func TestPluginFingerprintNamesOnlyItsPlugins(t *testing.T) {
	t.Parallel()
	good, trap := amountWasm(t)
	w := newRecoveryWorld(t, good)
	extra := recoveryRules + `
  - id: mentions
    description: says plugin but runs none
    did: {event: checkout, where: 'props.amount == 7', last: 7d}
`
	if err := os.WriteFile(w.rules, []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	rebuilt := func(ts *testServer) []string {
		t.Helper()
		if err := ts.srv.WaitRebuilt(context.Background()); err != nil {
			t.Fatal(err)
		}
		st, err := ts.client.Status(context.Background())
		if err != nil || st.Snapshot == nil || st.Snapshot.Loaded == "" {
			t.Fatalf("status %+v, %v: no snapshot loaded", st.Snapshot, err)
		}
		return st.Snapshot.Rebuilt
	}
	ts := w.start(t)
	w.publish(t, ts, false)
	ts.close()

	w.install(t, "other", good)
	ts = w.start(t)
	if got := rebuilt(ts); len(got) != 0 {
		t.Fatalf("adding an unrelated plugin rebuilt %v", got)
	}
	ts.close()

	w.install(t, "amount", trap) // a new version of amount
	ts = w.start(t)
	defer ts.close()
	if got, want := rebuilt(ts), []string{"big_plugin", "big_reader"}; !slices.Equal(got, want) {
		t.Fatalf("a new version of amount rebuilt %v, want %v", got, want)
	}
}
