package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segd/segd/rules"
)

// healthy checks that the amount plugin still gives exact answers.
func healthy(t *testing.T, reg *Registry) {
	t.Helper()
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 10}})
	if err != nil {
		t.Fatal(err)
	}
	ev := make([]rules.Event, 300)
	for i := range ev {
		ev[i] = rules.Event{User: "u", Name: "buy", Props: map[string]any{"amount": float64(i % 20)}}
	}
	out := rules.NewBits(len(ev))
	if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
		t.Fatalf("healthy plugin failed: %v", err)
	}
	for i := range ev {
		if out.Has(i) != (i%20 > 10) {
			t.Fatalf("healthy plugin: event %d wrong", i)
		}
	}
}

func events(n int, props map[string]any) []rules.Event {
	ev := make([]rules.Event, n)
	for i := range ev {
		ev[i] = rules.Event{User: "u", Name: "x", Props: props}
	}
	return ev
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	copyWasm := func(mod, name string) {
		data, err := os.ReadFile(filepath.Join(wasmDir, mod+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"amount", "badimport", "abi2", "noexports"} {
		copyWasm(m, m)
	}
	copyWasm("amount", "badmanifest")
	_ = os.WriteFile(filepath.Join(dir, "badmanifest.yaml"), []byte("memory_mb: 12\n"), 0o644)
	copyWasm("amount", "badlimit")
	_ = os.WriteFile(filepath.Join(dir, "badlimit.json"), []byte(`{"deadline_ms": -5}`), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "text.wasm"), []byte("this is not webassembly"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "big.wasm"), append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, 11<<20)...), 0o644)

	reg, err := LoadDir(context.Background(), dir, Options{CacheDir: cacheDir, Logger: slog.New(slog.DiscardHandler)})
	if reg == nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	if err == nil {
		t.Fatal("want load errors")
	}
	msg := err.Error()
	for _, want := range []string{
		"badimport.wasm: invalid plugin module: import env.steal_secrets is not allowed",
		"abi2.wasm: invalid plugin module: ABI version 2.0, this host speaks 1.x",
		"noexports.wasm: invalid plugin module: missing export(s) segd_alloc, segd_error, segd_init, segd_kinds; " +
			"export segd_match has signature (i32, i32) -> (i32), want (i32, i32, i32) -> (i32) (ABI v1, see sdk/ABI.md)",
		`text.wasm: invalid plugin module: not a WebAssembly binary (starts with "this is "`,
		"big.wasm: invalid plugin module: 11534344 bytes exceeds the 10485760-byte module limit",
		`badmanifest.yaml: yaml: unmarshal errors:` + "\n" + `  line 1: field memory_mb not found`,
		"badlimit.json: deadline_ms is -5, want 1..60000",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("load error lacks %q:\n%s", want, msg)
		}
	}
	st, ok := reg.Status("badimport")
	if !ok || st.State != StateInvalid || !strings.Contains(st.LastError, "env.steal_secrets") {
		t.Fatalf("badimport status %+v", st)
	}
	if _, err := reg.EventPredicate(rules.PluginRef{Name: "abi2"}); err == nil || !strings.Contains(err.Error(), "plugin abi2 is not loaded: ") {
		t.Fatalf("predicate of invalid plugin: %v", err)
	}
	healthy(t, reg)

	// A module that only declares a wrong signature is named too.
	small, err := New(Options{MaxModuleBytes: 1000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close(context.Background())
	data, _ := os.ReadFile(filepath.Join(wasmDir, "amount.wasm"))
	if err := small.Load(context.Background(), "amount", data, Manifest{}); err == nil ||
		!strings.Contains(err.Error(), "exceeds the 1000-byte module limit") {
		t.Fatalf("oversized: %v", err)
	}
}

func TestFaultsAreContained(t *testing.T) {
	logs := &logBuffer{}
	reg, err := setup(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))},
		testPlugin{name: "amount"},
		testPlugin{name: "loop", manifest: "deadline_ms: 50\n"},
		testPlugin{name: "membomb", manifest: "memory_mib: 16\ndeadline_ms: 5000\n"},
		testPlugin{name: "panic"},
		testPlugin{name: "trap"},
		testPlugin{name: "logspam", manifest: "log_per_second: 5\ndeadline_ms: 5000\n"},
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(name string, params map[string]any, wantErr error, wantText string) {
		t.Helper()
		pred, err := reg.EventPredicate(rules.PluginRef{Name: name, Params: params})
		if err != nil {
			t.Fatal(err)
		}
		ev := events(10, map[string]any{"amount": 1.0})
		start := time.Now()
		err = pred.MatchEvents(ctx, ev, rules.NewBits(len(ev)))
		if !errors.Is(err, wantErr) || !strings.Contains(err.Error(), wantText) {
			t.Fatalf("%s: got %v, want %v containing %q", name, err, wantErr, wantText)
		}
		t.Logf("%s: %v after %v", name, err, time.Since(start))
		healthy(t, reg)
	}
	check("loop", nil, ErrTimeout, "segd_match did not finish within 50ms")
	check("membomb", nil, ErrTrap, "out of memory")
	check("panic", map[string]any{"mode": "recover"}, ErrGuest, "panic in handler: boom in handler")
	check("panic", map[string]any{"mode": "fatal"}, ErrTrap, "panic: boom in goroutine")
	check("trap", nil, ErrTrap, "out of bounds memory access")

	for _, name := range []string{"loop", "membomb", "trap"} {
		st, _ := reg.Status(name)
		if st.Retries != 1 || st.Traps+st.Timeouts != 2 || st.State != StateOK {
			t.Errorf("%s status: %+v", name, st)
		}
	}
	st, _ := reg.Status("panic")
	if st.GuestErrors != 1 || st.Traps != 2 {
		t.Errorf("panic status: %+v", st)
	}

	// Logging in a tight loop: contained by the rate limit, batch still right.
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "logspam"})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(3, map[string]any{"spam": 1.0})
	out := rules.NewBits(3)
	if err := pred.MatchEvents(ctx, ev, out); err != nil || out.Count() != 3 {
		t.Fatalf("logspam: %v, %d matches", err, out.Count())
	}
	st, _ = reg.Status("logspam")
	if st.LogLinesDropped < 59000 {
		t.Fatalf("logspam: only %d lines dropped", st.LogLinesDropped)
	}
	if n := strings.Count(logs.String(), "spam spam spam"); n > 10 {
		t.Fatalf("logspam: %d lines got through a limit of 5/s, burst 10", n)
	}
	healthy(t, reg)
}

func TestFailedPluginAndRecovery(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	reg, err := setup(t, Options{Clock: clock, ProbeFailedEvery: time.Minute},
		testPlugin{name: "flaky", manifest: "fail_after: 2\n"}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := []rules.Event{{Props: map[string]any{"ok": true}}, {Props: map[string]any{"ok": false}}}
	bad := append(good[:2:2], rules.Event{Props: map[string]any{"boom": true}})
	match := func(ev []rules.Event) (rules.Bits, error) {
		out := rules.NewBits(len(ev))
		return out, pred.MatchEvents(ctx, ev, out)
	}
	if out, err := match(good); err != nil || !out.Has(0) || out.Has(1) {
		t.Fatalf("good batch: %v %v", out, err)
	}
	for range 2 {
		if _, err := match(bad); !errors.Is(err, ErrTrap) {
			t.Fatalf("bad batch: %v", err)
		}
		healthy(t, reg)
	}
	st, _ := reg.Status("flaky")
	if st.State != StateFailed || !strings.Contains(st.LastError, "out of bounds memory access") {
		t.Fatalf("after 2 failed batches: %+v", st)
	}
	if _, err := match(good); !errors.Is(err, ErrFailed) {
		t.Fatalf("failed plugin must fail fast: %v", err)
	}
	now.Add(int64(time.Minute))
	if out, err := match(good); err != nil || !out.Has(0) {
		t.Fatalf("probe batch: %v %v", out, err)
	}
	if st, _ := reg.Status("flaky"); st.State != StateOK || st.FailedFast != 1 {
		t.Fatalf("after recovery: %+v", st)
	}
}

func TestSandbox(t *testing.T) {
	reg, err := setup(t, Options{}, testPlugin{name: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	var reports []map[string]any
	for range 2 { // two instances: the same fake clock and "random" bytes
		pred, err := reg.EventPredicate(rules.PluginRef{Name: "probe", Params: map[string]any{"n": len(reports)}})
		if err != nil {
			t.Fatal(err)
		}
		err = pred.MatchEvents(context.Background(), events(1, nil), rules.NewBits(1))
		_, js, ok := strings.Cut(err.Error(), "panic in handler: ")
		if !ok {
			t.Fatalf("probe: %v", err)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			t.Fatalf("probe report %q: %v", js, err)
		}
		t.Logf("sandbox as seen from inside: %v", r)
		reports = append(reports, r)
	}
	r := reports[0]
	for _, k := range []string{"read_file_err", "read_dir_err", "write_file_err", "dial_err"} {
		if r[k] == "" {
			t.Errorf("%s: the guest succeeded", k)
		}
	}
	if env, _ := r["env"].([]any); len(env) != 0 {
		t.Errorf("env visible: %v", env)
	}
	if args, _ := r["args"].([]any); len(args) != 0 {
		t.Errorf("args visible: %v", args)
	}
	if now := r["now_unix"].(float64); time.Since(time.Unix(int64(now), 0)) < 365*24*time.Hour {
		t.Errorf("the guest sees the real clock: %v", time.Unix(int64(now), 0))
	}
	if reports[0]["rand"] != reports[1]["rand"] || reports[0]["now_unix"] != reports[1]["now_unix"] {
		t.Errorf("clock or randomness differ between instances: %v / %v", reports[0], reports[1])
	}
}

func TestPoolConcurrencyAndSplitting(t *testing.T) {
	reg, err := setup(t, Options{}, testPlugin{name: "amount", manifest: "instances: 3\nmax_batch: 100\nrecycle_calls: 7\n"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			min := float64(g)
			pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": min}})
			if err != nil {
				errs <- err
				return
			}
			for round := range 20 {
				n := 1 + (g*37+round*101)%700
				ev := make([]rules.Event, n)
				for i := range ev {
					ev[i].Props = map[string]any{"amount": float64((i + round) % 16)}
				}
				out := rules.NewBits(n)
				if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
					errs <- err
					return
				}
				for i := range ev {
					if out.Has(i) != (float64((i+round)%16) > min) {
						errs <- errors.New("wrong answer under concurrency")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, _ := reg.Status("amount")
	if st.Instances > 3*8 || st.Recycled == 0 || st.Traps != 0 {
		t.Fatalf("status %+v", st)
	}
	t.Logf("status: %d batches, %d instances started, %d recycled, %d live", st.Batches, st.Instantiated, st.Recycled, st.Instances)
}

func TestHotSwap(t *testing.T) {
	reg, err := setup(t, Options{}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 5}})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(64, map[string]any{"amount": 5.0})
	count := func() int {
		out := rules.NewBits(len(ev))
		if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
			t.Fatal(err)
		}
		return out.Count()
	}
	if n := count(); n != 0 {
		t.Fatalf("v1 (amount > 5): %d matches", n)
	}
	v1, _ := reg.Status("amount")

	// Batches keep running while versions are swapped under them.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out := rules.NewBits(len(ev))
			if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
				t.Error(err)
				return
			}
			if n := out.Count(); n != 0 && n != 64 {
				t.Errorf("a batch saw %d matches: mixed versions", n)
				return
			}
		}
	}()
	// A new version that rejects the parameters in use is refused.
	geo, _ := os.ReadFile(filepath.Join(wasmDir, "geofence.wasm"))
	if err := reg.Load(context.Background(), "amount", geo, Manifest{}); err == nil ||
		!strings.Contains(err.Error(), "rejects parameters") {
		t.Fatalf("swap to a version rejecting params: %v", err)
	}
	ge, _ := os.ReadFile(filepath.Join(wasmDir, "amount_ge.wasm"))
	if err := reg.Load(context.Background(), "amount", ge, Manifest{}); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if n := count(); n != 64 {
		t.Fatalf("v2 (amount >= 5): %d matches", n)
	}
	v2, _ := reg.Status("amount")
	if v1.Version == v2.Version || v2.State != StateOK {
		t.Fatalf("versions %s -> %s, state %s", v1.Version, v2.Version, v2.State)
	}
}

func TestContextCanceled(t *testing.T) {
	reg, err := setup(t, Options{}, testPlugin{name: "loop", manifest: "deadline_ms: 10000\n"}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "loop"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err = pred.MatchEvents(ctx, events(1, nil), rules.NewBits(1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("canceled by the caller: %v", err)
	}
	if st, _ := reg.Status("loop"); st.State != StateOK || st.Timeouts != 0 {
		t.Fatalf("a caller's cancel is not the plugin's fault: %+v", st)
	}
	healthy(t, reg)
}

// TestInterruptModes: Go and WebAssembly-text plugins get the inserted
// checks; a module the rewrite refuses (a start section) falls back to
// wazero's interrupts, and its endless loop is still stopped at the
// deadline; interrupt: false is reported as off.
func TestInterruptModes(t *testing.T) {
	requireWabt(t)
	logs := &logBuffer{}
	reg, err := setup(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))},
		testPlugin{name: "loop", manifest: "deadline_ms: 40\n"},
		testPlugin{name: "amountwat"},
		testPlugin{name: "startloop", manifest: "deadline_ms: 40\n"},
		testPlugin{name: "amount", manifest: "interrupt: false\n"},
	)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"loop": InterruptChecks, "amountwat": InterruptChecks, "startloop": InterruptWazero, "amount": InterruptOff,
	} {
		if st, _ := reg.Status(name); st.Interrupt != want {
			t.Errorf("%s: interrupt %q, want %q", name, st.Interrupt, want)
		}
	}
	if !strings.Contains(logs.String(), "start section") {
		t.Errorf("the fallback was not logged with its reason:\n%s", logs)
	}
	for _, name := range []string{"loop", "startloop"} {
		pred, err := reg.EventPredicate(rules.PluginRef{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		err = pred.MatchEvents(context.Background(), events(5, nil), rules.NewBits(5))
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "within 40ms") {
			t.Errorf("%s: %v, want ErrTimeout", name, err)
		}
	}
	healthy(t, reg)
}

// TestCountBombs: modules of a few bytes that declare billions of data
// segments, functions or locals are refused before wazero decodes them
// (wazero v1.12 allocates by the declared count, which would take the host
// down with an out-of-memory fatal error), and other plugins keep working.
func TestCountBombs(t *testing.T) {
	reg, err := setup(t, Options{}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	hdr := "\x00asm\x01\x00\x00\x00"
	for name, mod := range map[string]string{
		"data":   hdr + "\x0b\x06\xff\xff\xff\xff\x0f\x00",
		"funcs":  hdr + "\x03\x06\xff\xff\xff\xff\x0f\x00",
		"locals": hdr + "\x01\x04\x01\x60\x00\x00" + "\x03\x02\x01\x00" + "\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b",
	} {
		err := reg.Load(context.Background(), "bomb_"+name, []byte(mod), Manifest{})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "exceed") {
			t.Errorf("%s bomb: %v, want ErrInvalid about a count that exceeds a limit", name, err)
		}
	}
	healthy(t, reg)
}
