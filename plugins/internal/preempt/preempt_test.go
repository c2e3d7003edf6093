package preempt

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

var hostFn = Import{Module: "segd", Name: "preempt"}

// host is the test's side of the import: it grants budget until stopped,
// and counts the calls.
type host struct {
	budget  uint32
	stopped atomic.Bool
	calls   atomic.Int64
}

// newRuntime returns a runtime with the segd.preempt host function of h.
func newRuntime(t *testing.T, h *host) (context.Context, wazero.Runtime) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder(hostFn.Module).NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, stack []uint64) {
			h.calls.Add(1)
			stack[0] = uint64(h.budget)
			if h.stopped.Load() {
				stack[0] = 0
			}
		}), nil, []api.ValueType{api.ValueTypeI32}).
		Export(hostFn.Name).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, rt
}

// stopAfter stops the guest (at its next call to the host) after d.
func (h *host) stopAfter(d time.Duration) *time.Timer {
	return time.AfterFunc(d, func() { h.stopped.Store(true) })
}

// mod assembles a module from sections (id, body).
func mod(secs ...[]byte) []byte {
	b := bytes.Clone(header)
	for _, s := range secs {
		b = append(b, s[0])
		b = appendU32(b, uint32(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

func sec(id byte, items ...[]byte) []byte {
	b := appendU32([]byte{id}, uint32(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

// body is a function body with no locals.
func body(code ...byte) []byte {
	b := append([]byte{0}, code...)
	return append(appendU32(nil, uint32(len(b))), b...)
}

func export(name string, kind byte, idx uint32) []byte {
	return appendU32(append(appendName(nil, name), kind), idx)
}

var (
	typeVoid  = []byte{0x60, 0, 0}             // () -> ()
	typeI32   = []byte{0x60, 1, 0x7f, 1, 0x7f} // (i32) -> i32
	typeToI32 = []byte{0x60, 0, 1, 0x7f}       // () -> i32
)

// spinModule: spin loops forever; count(n) counts down from n in a loop and
// returns the number of iterations; deep recurses forever without a loop;
// it has no global section and imports one global (so the new global's
// index must follow it).
func spinModule() []byte {
	return mod(
		sec(1, typeVoid, typeI32, typeToI32),
		sec(2, cat(appendName(nil, "env"), appendName(nil, "g"), []byte{0x03, 0x7f, 0x00})),
		sec(3, []byte{0}, []byte{1}, []byte{0}, []byte{2}),
		sec(7, export("spin", 0, 0), export("count", 0, 1), export("deep", 0, 2), export("imported", 0, 3)),
		sec(10,
			body(0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b), // loop br 0 end end
			// (local.get 0) loop: if n == 0 return acc... kept simple:
			// loop { n = n-1; br_if 0 (n != 0) } return n+1000
			body(0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x20, 0x00, 0x41, 0xe8, 0x07, 0x6a, 0x0b),
			body(0x10, 0x02, 0x0b), // call deep (itself)
			body(0x23, 0x00, 0x0b), // global.get 0 (the import)
		),
	)
}

// envModule exports the global spinModule imports.
func envModule() []byte {
	return mod(
		sec(6, []byte{0x7f, 0x00, 0x41, 0x2a, 0x0b}), // i32 = 42
		sec(7, export("g", 3, 0)),
	)
}

func TestInstrumentHandAssembled(t *testing.T) {
	t.Parallel()
	h := &host{budget: 1000}
	ctx, rt := newRuntime(t, h)
	if _, err := rt.InstantiateWithConfig(ctx, envModule(), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	orig := spinModule()
	if _, err := rt.CompileModule(ctx, orig); err != nil {
		t.Fatalf("the test module itself is invalid: %v", err)
	}
	out, err := Instrument(orig, hostFn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, spinModule()) {
		t.Fatal("Instrument modified its input")
	}
	m, err := rt.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatalf("instrumented module: %v", err)
	}

	// Behaviour is unchanged (exports and calls renumbered right). The
	// host is asked once at the first entry (the global starts at 0), then
	// once LoopBudget iterations are used up, then every 1000 (its grant).
	res, err := m.ExportedFunction("count").Call(ctx, 20000)
	if err != nil || res[0] != 1000 {
		t.Fatalf("count(20000) = %v, %v; want 1000", res, err)
	}
	if c, want := h.calls.Load(), int64(1+(20000-LoopBudget+999)/1000); c != want {
		t.Fatalf("%d host calls for 20000 iterations, want %d", c, want)
	}
	if res, err := m.ExportedFunction("imported").Call(ctx); err != nil || res[0] != 42 {
		t.Fatalf("imported() = %v, %v; want 42 (the imported global keeps index 0)", res, err)
	}

	// A loop that never ends traps once the host says stop.
	start := time.Now() // before the timer is armed, so that it cannot fire earlier than 20ms after start
	timer := h.stopAfter(20 * time.Millisecond)
	defer timer.Stop()
	_, err = m.ExportedFunction("spin").Call(ctx)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("spin returned %v, want an unreachable trap", err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("spin trapped after %v, before the host said stop", el)
	}
}

func TestRecursionIsChecked(t *testing.T) {
	t.Parallel()
	h := &host{budget: 1000}
	ctx, rt := newRuntime(t, h)
	if _, err := rt.InstantiateWithConfig(ctx, envModule(), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	out, err := Instrument(spinModule(), hostFn)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	h.stopped.Store(true)
	_, err = m.ExportedFunction("deep").Call(ctx)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("deep, stopped: %v, want an unreachable trap (not a stack overflow)", err)
	}
}

// goGuest is a wasip1 program whose exports loop (with and without
// function calls, through a map, an interface and a closure, so the
// element section and call_indirect matter) and compute a checksum, so the
// instrumented Go runtime and compiler output can be compared with the
// original.
const goGuest = `package main

import "fmt"

//go:wasmexport spin
func spin() int32 {
	n := int32(0)
	for {
		n = step(n)
	}
}

//go:noinline
func step(n int32) int32 { return n*31 + 7 }

type adder interface{ add(int64) int64 }
type plus struct{ k int64 }

func (p plus) add(x int64) int64 { return x + p.k }

//go:wasmexport sum
func sum(n int32) int64 {
	s := int64(0)
	m := map[int32]int64{}
	var a adder = plus{3}
	f := func(x int64) int64 { return a.add(x) ^ 5 }
	for i := int32(0); i < n; i++ {
		m[i%97] += int64(i) * int64(i)
		s ^= f(m[i%97] + int64(len(m)))
	}
	return s + int64(len(fmt.Sprint(s)))
}

func main() {}
`

// buildGo builds goGuest with the Go toolchain running the test.
func buildGo(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(goGuest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module guest\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", "guest.wasm", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "guest.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoGuest: a Go module gives the same answers instrumented, its endless
// loop stops when the host says so, and a garbage collection started while
// it spins completes (the guest calls out to the host, where the Go
// runtime can stop it).
func TestGoGuest(t *testing.T) {
	t.Parallel()
	wasm := buildGo(t)
	out, err := Instrument(wasm, hostFn)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{budget: 4096}
	ctx, rt := newRuntime(t, h)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	inst := func(b []byte) api.Module {
		m, err := rt.InstantiateWithConfig(ctx, b, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	plain, checked := inst(wasm), inst(out)
	for _, n := range []uint64{0, 1, 1000, 20000} {
		a, err1 := plain.ExportedFunction("sum").Call(ctx, n)
		b, err2 := checked.ExportedFunction("sum").Call(ctx, n)
		if err1 != nil || err2 != nil || a[0] != b[0] {
			t.Fatalf("sum(%d): original %v %v, instrumented %v %v", n, a, err1, b, err2)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := checked.ExportedFunction("spin").Call(ctx); done <- err }()
	for h.calls.Load() < 10 { // spinning for sure
		runtime.Gosched()
	}
	runtime.GC() // would wait forever for a guest that never leaves its loop
	h.stopped.Store(true)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin: %v, want an unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Go guest's endless loop did not stop within 10s")
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	valid := spinModule()
	importsIt := mod(
		sec(1, typeToI32),
		sec(2, cat(appendName(nil, hostFn.Module), appendName(nil, hostFn.Name), []byte{0x00, 0x00})),
	)
	badOpcode := mod(
		sec(1, typeVoid),
		sec(3, []byte{0}),
		sec(10, body(0x06, 0x40, 0x0b, 0x0b)), // try (exception handling)
	)
	for _, c := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "not a WebAssembly", nil},
		{"text", "not a WebAssembly", []byte("(module)")},
		{"truncated section", "runs past the end", valid[:len(valid)-3]},
		{"import taken", "already imports segd.preempt", importsIt},
		{"unsupported opcode", "function body 0", badOpcode},
		{"start section", "start section", mod(sec(1, typeVoid), sec(3, []byte{0}), []byte{8, 0}, sec(10, body(0x0b)))},
		{"unknown section", "unknown section id 99", append(bytes.Clone(header), 99, 0)},
	} {
		_, err := Instrument(c.in, hostFn)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	if _, err := Instrument(badOpcode, hostFn); err == nil || !strings.Contains(err.Error(), "0x6") {
		t.Errorf("unsupported opcode error does not name the opcode: %v", err)
	}
}

// TestMinimalModule: a module with no type, import or global section gets
// them, in the right order (the compiler validates the order), and drops
// DWARF.
func TestMinimalModule(t *testing.T) {
	t.Parallel()
	in := mod(
		sec(3),
		[]byte{0, 8, '.', 'd', 'e', 'b', 'u', 'g', '_', 'x'},
	)
	out, err := Instrument(in, hostFn)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(".debug")) {
		t.Error("the .debug custom section was kept")
	}
	ctx, rt := newRuntime(t, &host{budget: 1})
	if _, err := rt.Instantiate(ctx, out); err != nil {
		t.Fatal(err)
	}
}
