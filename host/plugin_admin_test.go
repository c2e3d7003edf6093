package host

import (
	"context"
	"encoding/json"
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

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// Definitions of the plugins admin tests: a segment judged by the amount
// plugin (examples/plugins/amount-wat), one reading it, and the same
// conditions as expressions for the reference evaluator. The first
// version of the plugin takes amounts over 50, the second 50 too.
const (
	pluginSeg     = "id: big_plugin\ndid: {event: pay, where: {plugin: amount, params: {min: 50}}, last: 3d}\n"
	pluginReader  = "id: plugin_reader\nall:\n  - in_segment: big_plugin\n  - profile: gender == \"male\"\n"
	pluginSegGT   = "id: big_plugin\ndid: {event: pay, where: \"(props.amount ?? 0) > 50\", last: 3d}\n"
	pluginSegGE   = "id: big_plugin\ndid: {event: pay, where: \"(props.amount ?? 0) >= 50\", last: 3d}\n"
	amountMan     = "props: [amount]\n"
	edgeAmount    = 50.0
	amountGTMatch = `(if (f64.gt (f64.load (i32.add (local.get $values) (i32.shl (local.get $i) (i32.const 3))))`
)

// amountVersions builds the amount plugin as shipped (amount > min) and a
// second version (amount >= min) from WebAssembly text.
func amountVersions(t *testing.T) (gt, ge []byte) {
	t.Helper()
	src, err := os.ReadFile("../examples/plugins/amount-wat/amount.wat")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(src), amountGTMatch) != 1 {
		t.Fatalf("amount.wat changed: %q not found once", amountGTMatch)
	}
	return watModule(t, string(src)), watModule(t, strings.Replace(string(src), amountGTMatch, strings.Replace(amountGTMatch, "f64.gt", "f64.ge", 1), 1))
}

// watModule compiles WebAssembly text with wat2wasm.
func watModule(t *testing.T, text string) []byte {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		if os.Getenv("SEGD_REQUIRE_WABT") == "1" {
			t.Fatalf("SEGD_REQUIRE_WABT=1 but wat2wasm is missing: %v", err)
		}
		t.Skipf("wat2wasm not found (Debian package wabt): %v", err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
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

// withCustomSection appends a custom section of n bytes to a module: the
// same code, a larger module.
func withCustomSection(wasm []byte, n int) []byte {
	name := "padding"
	payload := append(append(uleb(uint64(len(name))), name...), make([]byte, n)...)
	out := append(slices.Clone(wasm), 0)
	out = append(out, uleb(uint64(len(payload)))...)
	return append(out, payload...)
}

func uleb(v uint64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

// startPluginTest starts segd on dataDir with the rule test's files,
// pluginsDir (may be empty) and a gate on the rules applier's log reads.
func startPluginTest(t *testing.T, dataDir, pluginsDir string, gate chan struct{}, seed uint64) *ruleTest {
	t.Helper()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC))
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
		PluginsDir: pluginsDir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), ruleRebuildGate: gate})
	return &ruleTest{testServer: ts, rulesFile: rulesFile, rng: rand.New(rand.NewPCG(seed, 17))}
}

// pluginBatch publishes a random batch in which no payment is exactly the
// edge amount (on which the two versions differ), plus, with edge, a
// payment of the edge amount by a new male user; every reference gets it.
func (rt *ruleTest) pluginBatch(t *testing.T, edge bool) {
	t.Helper()
	b := randomBatch(rt.rng, rt.clock.Now())
	for _, ev := range b.Events {
		if a, ok := ev.Props["amount"].(float64); ok && a == edgeAmount {
			ev.Props["amount"] = edgeAmount - 1
		}
	}
	rt.step++
	if edge {
		u := fmt.Sprintf("edge-%d", rt.step)
		b.Events = append(b.Events, rules.Event{User: u, Name: "pay", Time: rt.clock.Now().Add(-time.Hour).UnixMilli(),
			Props: map[string]any{"amount": edgeAmount}})
		b.Profiles = append(b.Profiles, rules.ProfileUpdate{User: u, Attrs: map[string]any{"gender": "male"}})
	}
	rt.publish(t, b, fmt.Sprintf("plugin-batch-%d", rt.step))
	for _, r := range rt.refs {
		r.Apply(b, rt.clock.Now())
	}
}

// waitSwapped waits until segment has no revision rebuilding beside the
// one served.
func (rt *ruleTest) waitSwapped(t *testing.T, segment string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info := segmentInfo(t, rt.testServer, segment)
		if info.NextRevision == nil && info.Status == "active" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s is not swapped in time: %+v", segment, info)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// valve feeds a gate while open: the rules applier's rebuilds read the log
// while it is, and wait while it is shut.
type valve struct {
	gate chan struct{}
	ctl  chan bool
	stop chan struct{}
}

func newValve(t *testing.T) *valve {
	v := &valve{gate: make(chan struct{}), ctl: make(chan bool), stop: make(chan struct{})}
	go func() {
		open := true
		for {
			var g chan struct{}
			if open {
				g = v.gate
			}
			select {
			case g <- struct{}{}:
			case open = <-v.ctl:
			case <-v.stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(v.stop) })
	return v
}

func (v *valve) set(open bool) { v.ctl <- open }

// TestPluginPutLive ships a new version of a plugin while batches flow:
// the segment naming it keeps serving its membership, marked rebuilding,
// while it is rebuilt from the log with the new version; after the swap
// it and the segment reading it are exact against the reference of the
// new version. A bad module is refused with the reason and the running
// version stays; a delete is refused while a segment names the plugin; a
// restart loads the stored version, which wins over --plugins DIR's file.
func TestPluginPutLive(t *testing.T) {
	t.Parallel()
	gt, ge := amountVersions(t)
	v := newValve(t)
	dataDir := t.TempDir()
	rt := startPluginTest(t, dataDir, "", v.gate, 31)
	ctx := context.Background()
	old := rt.expect(t, pluginSegGT, pluginReader)
	next := rt.expect(t, pluginSegGE, pluginReader)

	p1, err := rt.client.PushPlugin(ctx, "amount", gt, amountMan, "ana")
	if err != nil {
		t.Fatal(err)
	}
	if p1.Version != bus.Digest(gt) || p1.Previous != "" || len(p1.Rebuilding) != 0 {
		t.Fatalf("first push: %+v", p1)
	}
	r1, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: pluginSeg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: pluginReader}); err != nil {
		t.Fatal(err)
	}
	rt.waitServing(t, "big_plugin", r1.Revision)
	for i := range 6 {
		rt.pluginBatch(t, i%2 == 0)
	}
	rt.waitSwapped(t, "plugin_reader")
	rt.checkServed(t, old)
	if a, b := rt.refs[old].Members("big_plugin", rt.clock.Now()), rt.refs[next].Members("big_plugin", rt.clock.Now()); slices.Equal(a, b) {
		t.Fatalf("the two versions agree on the data (%v): the test does not discriminate", a)
	}

	// The new version, while the rebuild is held: the previous
	// membership is served, marked rebuilding, as batches flow.
	v.set(false)
	p2, err := rt.client.PushPlugin(ctx, "amount", ge, amountMan, "bo")
	if err != nil {
		t.Fatal(err)
	}
	if p2.Version != bus.Digest(ge) || p2.Previous != p1.Version || !slices.Equal(p2.Rebuilding, []string{"big_plugin"}) {
		t.Fatalf("second push: %+v", p2)
	}
	rt.waitNext(t, "big_plugin", r1.Revision)
	// The same version again changes nothing.
	if again, err := rt.client.PushPlugin(ctx, "amount", ge, amountMan, "bo"); err != nil || again.Version != p2.Version || len(again.Rebuilding) != 0 {
		t.Fatalf("the running version pushed again: %+v, %v", again, err)
	}
	// Payments of the edge amount, on which the versions differ, are
	// judged by the previous version for the membership served.
	for i := range 3 {
		rt.pluginBatch(t, i != 1)
		rt.checkServed(t, old)
	}
	var states api.MemberSegmentsReply
	msg, err := rt.nc.Request(api.SubjectMemberSegments, []byte(`{"user":"u-1"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(msg.Data, &states); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(states.States, func(s api.SegmentState) bool { return s.Segment == "big_plugin" }); i < 0 || states.States[i].State != api.StateRebuilding {
		t.Fatalf("member.segments while the new version rebuilds: %+v", states)
	}
	// segment.list names the version served and the one rebuilding.
	if info := segmentInfo(t, rt.testServer, "big_plugin"); info.Plugins["amount"] != p1.Version ||
		info.NextRevision == nil || info.NextRevision.Plugins["amount"] != p2.Version {
		t.Fatalf("segment.list while the new version rebuilds: %+v (next %+v)", info, info.NextRevision)
	}
	if prev := rt.srv.plugins.Previous("amount"); !slices.Equal(prev, []string{p1.Version}) {
		t.Fatalf("previous versions running while the segment rebuilds: %v", prev)
	}
	v.set(true)
	rt.waitSwapped(t, "big_plugin")
	rt.checkServed(t, next)
	if info := segmentInfo(t, rt.testServer, "big_plugin"); info.Plugins["amount"] != p2.Version {
		t.Fatalf("segment.list after the swap: %+v", info)
	}
	waitCond(t, "the previous version released after the swap", func() bool { return len(rt.srv.plugins.Previous("amount")) == 0 })
	for i := range 3 {
		rt.pluginBatch(t, i == 1)
		rt.checkServed(t, next)
	}

	// Bad modules: refused with the reason; the running version stays.
	for _, bad := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"not wasm", []byte("definitely not a module"), "refused"},
		{"no exports", watModule(t, "(module)"), "refused"},
		{"truncated", ge[:len(ge)/2], "refused"},
	} {
		_, err := rt.client.PushPlugin(ctx, "amount", bad.wasm, amountMan, "")
		if !client.IsBadRequest(err) || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), p2.Version[:12]) {
			t.Fatalf("%s: %v, want a 400 saying the running version stays", bad.name, err)
		}
	}
	if _, err := rt.client.PushPlugin(ctx, "amount", ge, "memory_mib: -3\n", ""); !client.IsBadRequest(err) {
		t.Fatalf("a bad manifest: %v, want 400", err)
	}
	got, err := rt.client.GetPlugin(ctx, "amount")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != p2.Version || got.Stored != p2.Version || got.Source != "store" || got.Manifest != amountMan ||
		got.Author != "bo" || !slices.Equal(got.Segments, []string{"big_plugin"}) || got.State != "ok" {
		t.Fatalf("plugin.get after refused modules: %+v", got)
	}
	rt.pluginBatch(t, true)
	rt.checkServed(t, next)

	// Delete is refused while a segment names the plugin.
	if _, err := rt.client.DeletePlugin(ctx, "amount", ""); !client.IsConflict(err) || !strings.Contains(err.Error(), `"big_plugin"`) {
		t.Fatalf("delete while named: %v, want 409 naming big_plugin", err)
	}
	list, err := rt.client.ListPlugins(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "amount" || list[0].Version != p2.Version {
		t.Fatalf("plugin.list: %+v, %v", list, err)
	}

	// A restart loads the stored version, over --plugins DIR's file.
	rt.close()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "amount.wasm"), gt, 0o644); err != nil {
		t.Fatal(err)
	}
	rt2 := startPluginTest(t, dataDir, dir, nil, 32)
	rt2.refs, rt2.sets, rt2.step = rt.refs, rt.sets, rt.step
	rt2.clock.Set(rt.clock.Now())
	if err := rt2.srv.WaitRebuilt(ctx); err != nil {
		t.Fatal(err)
	}
	rt2.waitSwapped(t, "big_plugin")
	got, err = rt2.client.GetPlugin(ctx, "amount")
	if err != nil || got.Version != p2.Version || got.Source != "store" {
		t.Fatalf("plugin.get after a restart with the old version in --plugins: %+v, %v", got, err)
	}
	rt2.checkServed(t, next)
	rt2.pluginBatch(t, true)
	rt2.checkServed(t, next)

	// With no segment naming it, the delete goes through; the directory's
	// version comes back.
	for _, seg := range []string{"plugin_reader", "big_plugin"} {
		if _, err := rt2.client.DeleteRule(ctx, api.RuleRequest{Segment: seg}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := rt2.client.DeletePlugin(ctx, "amount", "")
		if err == nil {
			break
		}
		if !client.IsConflict(err) || time.Now().After(deadline) {
			t.Fatalf("delete once no segment names it: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval: the rule deletes apply
	}
	got, err = rt2.client.GetPlugin(ctx, "amount")
	if err != nil || got.Version != bus.Digest(gt) || got.Source != "dir" || got.Stored != "" {
		t.Fatalf("plugin.get after the delete: %+v, %v", got, err)
	}
}

// longPluginName is a plugin name of the most characters.
var longPluginName = "p" + strings.Repeat("x", 63)

// pluginPutAtLimits is a plugin.put of the amount plugin padded to the
// largest module whose request fits maxPayload, with the longest name,
// manifest and author; "" without wat2wasm (and SEGD_REQUIRE_WABT unset).
func pluginPutAtLimits(t *testing.T, maxPayload int64) string {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil && os.Getenv("SEGD_REQUIRE_WABT") != "1" {
		return ""
	}
	gt, _ := amountVersions(t)
	head := amountMan + "# "
	manifest := head + strings.Repeat("m", bus.MaxPluginManifestBytes-len(head)-1) + "\n"
	r := api.PluginPutRequest{Name: longPluginName, Manifest: manifest, Author: strings.Repeat("a", bus.MaxRuleAuthorBytes)}
	// Room for the headers the request carries, then base64's 4/3.
	room := int(maxPayload) - 1024
	pad := 0
	for {
		r.Module = withCustomSection(gt, pad)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > room {
			r.Module = withCustomSection(gt, pad-3*(len(b)-room)/4-8)
			b, _ = json.Marshal(r)
			if len(b) > room {
				t.Fatalf("plugin.put at its limits is %d bytes, over %d", len(b), room)
			}
			return string(b)
		}
		pad += 64 << 10
	}
}

// TestPluginPutThroughObjectStore pushes a module larger than the max
// payload: the client uploads it to the plugins bucket and names it in
// plugin.put, segd reads, checks and loads it, deletes the upload, and the
// segment naming it judges with it. An upload whose digest does not match
// the request's is refused and deleted.
func TestPluginPutThroughObjectStore(t *testing.T) {
	t.Parallel()
	gt, _ := amountVersions(t)
	rt := startPluginTest(t, t.TempDir(), "", nil, 41)
	ctx := context.Background()
	ref := rt.expect(t, pluginSegGT)
	big := withCustomSection(gt, int(rt.nc.MaxPayload())+(256<<10))

	p, err := rt.client.PushPlugin(ctx, "amount", big, amountMan, "ana")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != bus.Digest(big) || p.Size != len(big) {
		t.Fatalf("push of %d bytes: %+v", len(big), p)
	}
	obj, err := rt.js.ObjectStore(ctx, api.PluginsBucket)
	if err != nil {
		t.Fatal(err)
	}
	objects, err := obj.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objects {
		names = append(names, o.Name)
	}
	slices.Sort(names)
	if want := []string{"amount", api.PluginVersionPrefix + "amount/" + p.Version}; !slices.Equal(names, want) {
		t.Fatalf("bucket %s holds %v after the push; want %v: the module and its kept version (the upload deleted)", api.PluginsBucket, names, want)
	}
	got, err := rt.client.GetPlugin(ctx, "amount")
	if err != nil || got.Size != len(big) || got.Stored != p.Version || got.Version != p.Version {
		t.Fatalf("plugin.get: %+v, %v", got, err)
	}

	r, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: pluginSeg})
	if err != nil {
		t.Fatal(err)
	}
	rt.waitServing(t, "big_plugin", r.Revision)
	for i := range 4 {
		rt.pluginBatch(t, i == 0)
	}
	rt.checkServed(t, ref)

	// An upload that is not what the request says.
	if _, err := obj.PutBytes(ctx, api.PluginUploadPrefix+"amount/x", big); err != nil {
		t.Fatal(err)
	}
	wrong := api.PluginPutRequest{Name: "amount", Object: api.PluginUploadPrefix + "amount/x", Digest: strings.Repeat("0", 64)}
	body, _ := json.Marshal(wrong)
	msg, err := rt.nc.Request(api.SubjectPluginPut, body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != api.CodeBadRequest || !strings.Contains(string(msg.Data), "sha256") {
		t.Fatalf("an upload with another digest: %s %s", code, msg.Data)
	}
	if _, err := obj.GetInfo(ctx, wrong.Object); err == nil {
		t.Fatalf("the refused upload %s is still in the bucket", wrong.Object)
	}
	if got, err := rt.client.GetPlugin(ctx, "amount"); err != nil || got.Version != p.Version {
		t.Fatalf("plugin.get after a refused upload: %+v, %v", got, err)
	}

	// A refused module of a new name leaves nothing behind.
	if _, err := rt.client.PushPlugin(ctx, "ghost", []byte("not a module"), "", ""); !client.IsBadRequest(err) {
		t.Fatalf("a bad module of a new name: %v, want 400", err)
	}
	if _, err := rt.client.GetPlugin(ctx, "ghost"); !client.IsNotFound(err) {
		t.Fatalf("plugin.get of a refused new name: %v, want 404", err)
	}
	// Deleted, a plugin of the bucket alone is unloaded: rules cannot
	// name it any more.
	if _, err := rt.client.DeleteRule(ctx, api.RuleRequest{Segment: "big_plugin"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := rt.client.DeletePlugin(ctx, "amount", "")
		if err == nil {
			break
		}
		if !client.IsConflict(err) || time.Now().After(deadline) {
			t.Fatalf("delete once no segment names it: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval: the rule delete applies
	}
	if _, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: pluginSeg}); !client.IsBadRequest(err) || !strings.Contains(err.Error(), "amount") {
		t.Fatalf("a rule naming a deleted plugin: %v, want 400", err)
	}
	if list, err := rt.client.ListPlugins(ctx); err != nil || len(list) != 0 {
		t.Fatalf("plugin.list after the delete: %+v, %v", list, err)
	}
}

// TestPluginPutRebuildsFileRules: a segment of a rule file naming a
// plugin of --plugins DIR is rebuilt with a version pushed through the
// API, as one defined through the API is, and ends exact; the version
// stored wins at the next start.
func TestPluginPutRebuildsFileRules(t *testing.T) {
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
	v := newValve(t)
	start := func(seed uint64) *ruleTest {
		clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC))
		ts := startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
			PluginsDir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), ruleRebuildGate: v.gate})
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
	if got, err := rt.client.GetPlugin(ctx, "amount"); err != nil || got.Source != "dir" || !strings.HasSuffix(got.File, "amount.wasm") {
		t.Fatalf("plugin.get of a --plugins file: %+v, %v", got, err)
	}
	if _, err := rt.client.DeletePlugin(ctx, "amount", ""); !client.IsBadRequest(err) || !strings.Contains(err.Error(), "remove the file") {
		t.Fatalf("delete of a --plugins file: %v, want 400", err)
	}
	before, _ := rt.srv.plugins.Status("amount")
	v.set(false)
	p, err := rt.client.PushPlugin(ctx, "amount", ge, amountMan, "")
	if err != nil || !slices.Equal(p.Rebuilding, []string{"big_plugin"}) {
		t.Fatalf("push: %+v, %v", p, err)
	}
	// While it rebuilds, the rule file's segment (revision 0) is marked
	// rebuilding, names the version served, and serves what the previous
	// version judges, edge payments included.
	rt.waitNext(t, "big_plugin", 0)
	if info := segmentInfo(t, rt.testServer, "big_plugin"); info.Plugins["amount"] != before.Version || info.NextRevision.Plugins["amount"] != p.Version {
		t.Fatalf("segment.list while the file's segment rebuilds: %+v (next %+v)", info, info.NextRevision)
	}
	var states api.MemberSegmentsReply
	msg, err := rt.nc.Request(api.SubjectMemberSegments, []byte(`{"user":"u-1","segments":["big_plugin"]}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(msg.Data, &states); err != nil {
		t.Fatal(err)
	}
	if len(states.States) != 1 || states.States[0].State != api.StateRebuilding {
		t.Fatalf("member.segments while the file's segment rebuilds: %+v", states)
	}
	// A flag service that accepts the previous revision gets the served
	// answer of a rule file's segment (revision 0) too, from either call.
	fs := client.New(rt.nc, client.AcceptPreviousRevision())
	oldMembers := rt.refs[old].Members("big_plugin", rt.clock.Now())
	for _, u := range []string{"u-1", "u-2", "u-3"} {
		want := slices.Contains(oldMembers, u)
		if got, err := fs.InSegment(ctx, u, "big_plugin"); err != nil || got != want {
			t.Fatalf("InSegment(%s) with AcceptPreviousRevision while a file's segment rebuilds: %v, %v; want %v", u, got, err, want)
		}
		if got, err := fs.InSegments(ctx, u, []string{"big_plugin"}); err != nil || got["big_plugin"] != want {
			t.Fatalf("InSegments(%s) with AcceptPreviousRevision while a file's segment rebuilds: %v, %v; want %v", u, got, err, want)
		}
	}
	rt.pluginBatch(t, true)
	rt.checkServed(t, old)
	v.set(true)
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
	if got, err := rt2.client.GetPlugin(ctx, "amount"); err != nil || got.Source != "store" || got.Version != p.Version {
		t.Fatalf("after a restart: %+v, %v", got, err)
	}
}

// waitExact waits until every segment of reference i serves the
// reference's members and none has a revision rebuilding, then checks
// them: a swap queued on the applier has happened.
func (rt *ruleTest) waitExact(t *testing.T, i int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		exact := true
		for _, s := range rt.sets[i] {
			got, err := allMembers(context.Background(), rt.testServer, s.ID)
			want := rt.refs[i].Members(s.ID, rt.clock.Now())
			if err != nil || !slices.Equal(got, want) && len(got)+len(want) > 0 || segmentInfo(t, rt.testServer, s.ID).NextRevision != nil {
				exact = false
				break
			}
		}
		if exact {
			rt.checkServed(t, i)
			return
		}
		if time.Now().After(deadline) {
			rt.checkServed(t, i)
			t.Fatalf("reference %d: the segments do not become exact in time", i)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// TestPluginWrittenToBucket: a module written to SEGD_PLUGINS by another
// writer (another segd, `nats object put`) is loaded like a push and the
// segments naming it are rebuilt and end exact; one that does not load is
// logged and the running version stays.
func TestPluginWrittenToBucket(t *testing.T) {
	t.Parallel()
	gt, ge := amountVersions(t)
	rt := startPluginTest(t, t.TempDir(), "", nil, 61)
	ctx := context.Background()
	old := rt.expect(t, pluginSegGT)
	next := rt.expect(t, pluginSegGE)
	obj, err := rt.js.ObjectStore(ctx, api.PluginsBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitPlugin := func(what string, cond func(*api.Plugin) bool) *api.Plugin {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			p, err := rt.client.GetPlugin(ctx, "amount")
			if err == nil && cond(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("plugin amount: %s did not happen in time: %+v, %v", what, p, err)
			}
			time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
		}
	}
	// As `nats object put` writes it: no metadata, so no manifest.
	if _, err := obj.PutBytes(ctx, "amount", gt); err != nil {
		t.Fatal(err)
	}
	waitPlugin("loading the first version", func(p *api.Plugin) bool { return p.Version == bus.Digest(gt) && p.Source == "store" })
	r, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: pluginSeg})
	if err != nil {
		t.Fatal(err)
	}
	rt.waitServing(t, "big_plugin", r.Revision)
	for i := range 4 {
		rt.pluginBatch(t, i%2 == 0)
	}
	rt.checkServed(t, old)

	if _, err := obj.PutBytes(ctx, "amount", ge); err != nil {
		t.Fatal(err)
	}
	waitPlugin("loading the second version", func(p *api.Plugin) bool { return p.Version == bus.Digest(ge) })
	rt.pluginBatch(t, true)
	rt.waitExact(t, next)

	if _, err := obj.PutBytes(ctx, "amount", []byte("not a module")); err != nil {
		t.Fatal(err)
	}
	p := waitPlugin("refusing a bad module", func(p *api.Plugin) bool { return strings.Contains(p.LastError, "not a WebAssembly binary") })
	if p.Version != bus.Digest(ge) || p.State != "ok" {
		t.Fatalf("after a bad module was written: %+v", p)
	}
	rt.pluginBatch(t, true)
	rt.checkServed(t, next)
}

// waitCond polls cond until it holds, failing the test after 30 s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// TestRuleChangesReleasePluginPools: the definitions a put replaces, the
// sets compiled to check puts, validations and deletes, and revisions
// superseded before they ran release their plugin predicates, so the
// plugin keeps warm instances only for the parameters that run (each a
// pool of instances, until Options.MaxPools).
func TestRuleChangesReleasePluginPools(t *testing.T) {
	t.Parallel()
	gt, _ := amountVersions(t)
	rt := startPluginTest(t, t.TempDir(), "", nil, 71)
	ctx := context.Background()
	if _, err := rt.client.PushPlugin(ctx, "amount", gt, amountMan, ""); err != nil {
		t.Fatal(err)
	}
	def := func(min int) string {
		return fmt.Sprintf("id: big_plugin\ndid: {event: pay, where: {plugin: amount, params: {min: %d}}, last: 3d}\n", min)
	}
	var last *api.RulePutReply
	for min := 10; min <= 60; min += 10 {
		if _, err := rt.client.ValidateRules(ctx, api.RuleValidateRequest{Definition: strings.Replace(def(min+1), "big_plugin", "other", 1)}); err != nil {
			t.Fatal(err)
		}
		r, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: def(min)})
		if err != nil {
			t.Fatal(err)
		}
		last = r
		rt.waitServing(t, "big_plugin", r.Revision)
		rt.pluginBatch(t, false)
	}
	rt.waitServing(t, "big_plugin", last.Revision)
	waitCond(t, "one pool, for the parameters that run", func() bool {
		st, _ := rt.srv.plugins.Status("amount")
		return st.Pools == 1
	})
}

// TestPluginVersionsKept: every put keeps its module as a version;
// plugin.get lists the last api.PluginVersionsKept, newest first, with
// their digests, and one can be asked for by a prefix of its digest; an
// older one is deleted from the bucket.
func TestPluginVersionsKept(t *testing.T) {
	t.Parallel()
	gt, _ := amountVersions(t)
	rt := startPluginTest(t, t.TempDir(), "", nil, 81)
	ctx := context.Background()
	var digests []string
	for i := range api.PluginVersionsKept + 2 {
		wasm := withCustomSection(gt, i+1)
		p, err := rt.client.PushPlugin(ctx, "amount", wasm, amountMan, fmt.Sprint("author-", i))
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, p.Version)
	}
	got, err := rt.client.GetPlugin(ctx, "amount")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Versions) != api.PluginVersionsKept {
		t.Fatalf("%d versions kept, want %d: %+v", len(got.Versions), api.PluginVersionsKept, got.Versions)
	}
	for i, v := range got.Versions {
		j := len(digests) - 1 - i
		if v.Version != digests[j] || v.Author != fmt.Sprint("author-", j) || v.Manifest != amountMan || v.Object != api.PluginVersionPrefix+"amount/"+digests[j] {
			t.Fatalf("version %d: %+v, want %s by author-%d", i, v, digests[j], j)
		}
	}
	one, err := rt.client.GetPluginVersion(ctx, "amount", digests[3][:12])
	if err != nil || len(one.Versions) != 1 || one.Versions[0].Version != digests[3] {
		t.Fatalf("get --version: %+v, %v", one, err)
	}
	wasm, err := rt.client.ReadPluginVersion(ctx, one.Versions[0])
	if err != nil || bus.Digest(wasm) != digests[3] {
		t.Fatalf("reading version %.12s: %v", digests[3], err)
	}
	if _, err := rt.client.GetPluginVersion(ctx, "amount", digests[0][:12]); !client.IsNotFound(err) {
		t.Fatalf("the oldest version, past the limit: %v, want 404", err)
	}
	obj, err := rt.js.ObjectStore(ctx, api.PluginsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.GetInfo(ctx, api.PluginVersionPrefix+"amount/"+digests[0]); err == nil {
		t.Fatal("the oldest version's object is still in the bucket")
	}
	if _, err := rt.client.GetPluginVersion(ctx, "amount", "zz"); !client.IsBadRequest(err) {
		t.Fatalf("a version that is not hex: %v, want 400", err)
	}
	list, err := rt.client.ListPlugins(ctx)
	if err != nil || len(list) != 1 || len(list[0].Versions) != 0 {
		t.Fatalf("plugin.list lists the plugin without its versions: %+v, %v", list, err)
	}
}
