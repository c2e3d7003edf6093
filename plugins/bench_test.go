package plugins

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/segd/segd/plugins/internal/preempt"
	"github.com/segd/segd/rules"
	"github.com/tetratelabs/wazero"
)

const benchBatch = 1000

// benchEvents are realistic checkout events: six properties, one of them
// the amount the predicate reads.
func benchEvents() []rules.Event {
	rng := rand.New(rand.NewPCG(7, 7))
	ev := make([]rules.Event, benchBatch)
	for i := range ev {
		ev[i] = rules.Event{User: fmt.Sprintf("user-%06d", rng.IntN(1e6)), Name: "checkout", Time: 1.7e12 + int64(i),
			Props: map[string]any{
				"amount": float64(rng.IntN(200)), "currency": "EUR", "items": float64(rng.IntN(9)),
				"coupon": rng.IntN(2) == 0, "channel": "web", "sku": "SKU-12345",
			}}
	}
	return ev
}

func nativeMatch(ev []rules.Event, min float64, out rules.Bits) {
	for i := range ev {
		if a, ok := ev[i].Props["amount"].(float64); ok && a > min {
			out.Set(i)
		}
	}
}

func benchRegistry(b *testing.B, manifest string, name string) *Registry {
	b.Helper()
	reg, err := setup(b, Options{}, testPlugin{name: name, manifest: manifest})
	if err != nil {
		b.Fatal(err)
	}
	return reg
}

// BenchmarkVsNative runs, in one benchmark, the same predicate (amount > 100)
// over 1000-event batches as native Go, as a plugin (one call per batch),
// and as one wazero call per event, and reports ns/event for each and the
// ratios. The per-event call goes through the same path as a batch (encode
// one event into the guest buffer, segd_match, read the answer) on the same
// warm instance of the same module.
//
// api is how the plugin reads the property: str = e.Num("amount"), key =
// e.NumOf(key), batch = HandleEventBatch over the column, wat = the
// WebAssembly-text example (examples/plugins/amount-wat), which shows what
// the ABI costs without the Go compiler's wasm code; rust-item and
// rust-batch = the Rust example (examples/plugins/amount-rs) through a
// per-event handler with a Key, and through its batch handler; c = the C
// example (examples/plugins/amount-c), a loop over the column. mode is how the deadline is enforced (checks: the
// inserted countdown, the default; wazero: wazero's context checks; off:
// interrupt: false) and what the manifest declares (props: only amount is
// sent, otherwise all six properties; omit: user, name and time are not).
func BenchmarkVsNative(b *testing.B) {
	for _, api := range []struct{ name, module string }{
		{"str", "amount"}, {"key", "amount_key"}, {"batch", "amount_batch"}, {"wat", "amountwat"},
		{"rust-item", "amount_rs"}, {"rust-batch", "amount_rs_batch"}, {"c", "amount_c"},
	} {
		for _, mode := range []struct {
			name, manifest string
			wazero         bool
		}{
			{"checks", "", false},
			{"checks-props", "props: [amount]\n", false},
			{"checks-props-omit", "props: [amount]\nomit: [user, name, time]\n", false},
			{"wazero-props", "props: [amount]\n", true},
			{"off-props", "interrupt: false\nprops: [amount]\n", false},
		} {
			b.Run(api.name+"/"+mode.name, func(b *testing.B) {
				switch api.name {
				case "wat":
					requireWabt(b)
				case "rust-item", "rust-batch", "c":
					// These declare their props themselves (segd_props), so
					// "checks" sends only amount too: measure the default
					// and omit only, to keep make bench short.
					if mode.name != "checks" && mode.name != "checks-props-omit" {
						b.Skip("measured with checks and checks-props-omit only")
					}
					if api.name == "c" {
						requireC(b)
					} else {
						requireRust(b)
					}
				}
				benchVsNative(b, Options{WazeroInterrupts: mode.wazero}, api.module, mode.manifest)
			})
		}
	}
}

func benchVsNative(b *testing.B, opts Options, module, manifest string) {
	reg, err := setup(b, opts, testPlugin{name: "amount", module: module, manifest: manifest})
	if err != nil {
		b.Fatal(err)
	}
	params := map[string]any{"min": 100}
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: params})
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvents()
	out := rules.NewBits(len(ev))
	want := rules.NewBits(len(ev))
	nativeMatch(ev, 100, want)

	// One wazero call per event, on a warm instance of the same module.
	v := reg.plugins["amount"].acquire()
	defer v.release()
	pl, _ := v.pool(context.Background(), []byte(`{"min":100}`))
	in, err := pl.get(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer pl.put(in, true)
	maxBytes := v.man.MaxBatchMiB << 20
	perEvent := func(ctx context.Context) {
		for i := range ev {
			if _, err := in.match(ctx, kindEvents, 0, items{ev: ev[i : i+1]}, i, out, maxBytes); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	var tNative, tPlugin, tPerEvent time.Duration
	check := func(what string) {
		for i := range want {
			if out[i] != want[i] {
				b.Fatalf("%s: wrong answer", what)
			}
		}
	}
	b.ResetTimer()
	for range b.N {
		clear(out)
		t0 := time.Now()
		nativeMatch(ev, 100, out)
		t1 := time.Now()
		clear(out)
		if err := pred.MatchEvents(ctx, ev, out); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		check("plugin")
		clear(out)
		t3 := time.Now()
		perEvent(ctx)
		t4 := time.Now()
		check("per-event call")
		tNative, tPlugin, tPerEvent = tNative+t1.Sub(t0), tPlugin+t2.Sub(t1), tPerEvent+t4.Sub(t3)
	}
	b.StopTimer()
	n := float64(b.N * len(ev))
	b.ReportMetric(float64(tPlugin.Nanoseconds())/n, "plugin-ns/event")
	b.ReportMetric(float64(tNative.Nanoseconds())/n, "native-ns/event")
	b.ReportMetric(float64(tPerEvent.Nanoseconds())/n, "percall-ns/event")
	b.ReportMetric(float64(tPlugin)/float64(tNative), "x-native")
	b.ReportMetric(float64(tPerEvent)/float64(tPlugin), "percall/plugin")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkExamples reports ns/event of the example plugins with each way
// of enforcing the deadline (see BenchmarkVsNative).
func BenchmarkExamples(b *testing.B) {
	ev := randomEvents(rand.New(rand.NewPCG(3, 3)), benchBatch)
	for _, c := range []struct {
		name   string
		params map[string]any
	}{
		{"geofence", map[string]any{"polygons": paris}},
		{"searchclass", map[string]any{"prop": "term", "classes": classes, "match": []string{"electronics", "garden"}}},
		{"scoring", scoringParams},
		{"scoring_rs", scoringParams},
		{"tokens", map[string]any{"prop": "term", "words": tokenWords}},
		{"amount", map[string]any{"min": 50}},
	} {
		for _, mode := range []struct {
			name, manifest string
			wazero         bool
		}{{"checks", "", false}, {"wazero", "", true}, {"off", "interrupt: false\n", false}} {
			b.Run(c.name+"/"+mode.name, func(b *testing.B) {
				if c.name == "scoring_rs" || c.name == "tokens" {
					requireRust(b)
				}
				reg, err := setup(b, Options{WazeroInterrupts: mode.wazero}, testPlugin{name: c.name, manifest: mode.manifest})
				if err != nil {
					b.Fatal(err)
				}
				pred, err := reg.EventPredicate(rules.PluginRef{Name: c.name, Params: c.params})
				if err != nil {
					b.Fatal(err)
				}
				out := rules.NewBits(len(ev))
				b.ResetTimer()
				for range b.N {
					clear(out)
					if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ev)), "ns/event")
			})
		}
	}
}

// BenchmarkPoolParallel measures throughput of one predicate used from
// GOMAXPROCS goroutines (a pool of as many instances).
func BenchmarkPoolParallel(b *testing.B) {
	reg := benchRegistry(b, fmt.Sprintf("instances: %d\nprops: [amount]\n", runtime.GOMAXPROCS(0)), "amount")
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 100}})
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvents()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		out := rules.NewBits(len(ev))
		for pb.Next() {
			clear(out)
			if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ev)), "ns/event")
}

// BenchmarkCompile measures compiling a Go guest (the amount plugin) cold,
// and with the on-disk compilation cache warm, as loading does it: after
// inserting the interrupt checks (timed alone as "instrument").
func BenchmarkCompile(b *testing.B) {
	orig, err := os.ReadFile(filepath.Join(wasmDir, "amount.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	wasm, err := preempt.Instrument(orig, preemptImport)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("instrument", func(b *testing.B) {
		b.SetBytes(int64(len(orig)))
		for range b.N {
			if _, err := preempt.Instrument(orig, preemptImport); err != nil {
				b.Fatal(err)
			}
		}
	})
	compile := func(b *testing.B, dir string) {
		ctx := context.Background()
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := New(Options{CacheDir: "", Logger: nil})
		if err != nil {
			b.Fatal(err)
		}
		r.cache = cache
		defer r.Close(ctx)
		k := compKey{"x", rtKey{512, false}, true}
		if _, err := r.runtime(ctx, k.rt); err != nil {
			b.Fatal(err)
		}
		if _, err := r.compile(ctx, k, wasm); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			compile(b, b.TempDir())
		}
	})
	b.Run("cached", func(b *testing.B) {
		dir := b.TempDir()
		compile(b, dir)
		b.ResetTimer()
		for range b.N {
			compile(b, dir)
		}
	})
}

// BenchmarkInstantiate measures starting one instance of a Go guest,
// including _initialize and segd_init.
func BenchmarkInstantiate(b *testing.B) {
	reg := benchRegistry(b, "", "amount")
	v := reg.plugins["amount"].acquire()
	defer v.release()
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		in, err := v.newInstance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.initParams(ctx, []byte(`{"min":1}`)); err != nil {
			b.Fatal(err)
		}
		in.close()
	}
}
