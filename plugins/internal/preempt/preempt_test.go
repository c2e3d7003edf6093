package preempt

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

const flag = "segd_interrupt"

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

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

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

func newRuntime(t *testing.T) (context.Context, wazero.Runtime) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { rt.Close(ctx) })
	return ctx, rt
}

// interruptAfter sets the module's flag after d.
func interruptAfter(t *testing.T, m api.Module, d time.Duration) *time.Timer {
	t.Helper()
	g, ok := m.ExportedGlobal(flag).(api.MutableGlobal)
	if !ok {
		t.Fatalf("module does not export a mutable global %q", flag)
	}
	return time.AfterFunc(d, func() { g.Set(1) })
}

func TestInstrumentHandAssembled(t *testing.T) {
	t.Parallel()
	ctx, rt := newRuntime(t)
	if _, err := rt.InstantiateWithConfig(ctx, envModule(), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	orig := spinModule()
	if _, err := rt.CompileModule(ctx, orig); err != nil {
		t.Fatalf("the test module itself is invalid: %v", err)
	}
	out, err := Instrument(orig, flag)
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

	// Behaviour is unchanged while the flag is clear.
	res, err := m.ExportedFunction("count").Call(ctx, 5000)
	if err != nil || res[0] != 1000 {
		t.Fatalf("count(5000) = %v, %v; want 1000", res, err)
	}
	if res, err := m.ExportedFunction("imported").Call(ctx); err != nil || res[0] != 42 {
		t.Fatalf("imported() = %v, %v; want 42 (the imported global keeps index 0)", res, err)
	}
	if got := m.ExportedGlobal(flag).Get(); got != 0 {
		t.Fatalf("flag starts at %d, want 0", got)
	}

	// A loop that never ends traps soon after the flag is set.
	timer := interruptAfter(t, m, 20*time.Millisecond)
	defer timer.Stop()
	start := time.Now()
	_, err = m.ExportedFunction("spin").Call(ctx)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("spin returned %v, want an unreachable trap", err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("spin trapped after %v, before the flag was set", el)
	}

	// With the flag set, even a function without loops stops at entry.
	if _, err := m.ExportedFunction("imported").Call(ctx); err == nil {
		t.Fatal("a call with the flag set did not trap at function entry")
	}
}

func TestRecursionIsChecked(t *testing.T) {
	t.Parallel()
	ctx, rt := newRuntime(t)
	if _, err := rt.InstantiateWithConfig(ctx, envModule(), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	out, err := Instrument(spinModule(), flag)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	m.ExportedGlobal(flag).(api.MutableGlobal).Set(1)
	_, err = m.ExportedFunction("deep").Call(ctx)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("deep with the flag set: %v, want an unreachable trap (not a stack overflow)", err)
	}
}

// goGuest is a wasip1 program whose exports loop (with and without
// function calls) and compute a checksum, so the instrumented Go runtime
// and compiler output can be compared with the original.
const goGuest = `package main

//go:wasmexport spin
func spin() int32 {
	n := int32(0)
	for {
		n = step(n)
	}
}

//go:noinline
func step(n int32) int32 { return n*31 + 7 }

//go:wasmexport sum
func sum(n int32) int64 {
	s := int64(0)
	m := map[int32]int64{}
	for i := int32(0); i < n; i++ {
		m[i%97] += int64(i) * int64(i)
		s ^= m[i%97] + int64(len(m))
	}
	return s
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

func TestGoGuest(t *testing.T) {
	t.Parallel()
	wasm := buildGo(t)
	out, err := Instrument(wasm, flag)
	if err != nil {
		t.Fatal(err)
	}
	ctx, rt := newRuntime(t)
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
	timer := interruptAfter(t, checked, 30*time.Millisecond)
	defer timer.Stop()
	done := make(chan error, 1)
	go func() { _, err := checked.ExportedFunction("spin").Call(ctx); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin: %v, want an unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Go guest's endless loop was not interrupted within 10s of setting the flag")
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	valid := spinModule()
	withFlag := mod(
		sec(1, typeVoid),
		sec(3, []byte{0}),
		sec(7, export(flag, 0, 0)),
		sec(10, body(0x0b)),
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
		{"taken export", `already exports "segd_interrupt"`, withFlag},
		{"unsupported opcode", "function body 0", badOpcode},
		{"start section", "start section", mod(sec(1, typeVoid), sec(3, []byte{0}), []byte{8, 0}, sec(10, body(0x0b)))},
		{"unknown section", "unknown section id 99", append(bytes.Clone(header), 99, 0)},
	} {
		_, err := Instrument(c.in, flag)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	if _, err := Instrument(badOpcode, flag); err == nil || !strings.Contains(err.Error(), "0x6") {
		t.Errorf("unsupported opcode error does not name the opcode: %v", err)
	}
}

// TestMinimalModule: a module with no global or export section gets both,
// in the right order (the compiler validates the order).
func TestMinimalModule(t *testing.T) {
	t.Parallel()
	in := mod(
		sec(1, typeToI32),
		sec(3, []byte{0}),
		sec(10, body(0x41, 0x07, 0x0b)),
		[]byte{0, 8, '.', 'd', 'e', 'b', 'u', 'g', '_', 'x'}, // a DWARF-like custom section
	)
	out, err := Instrument(in, flag)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(".debug")) {
		t.Error("the .debug custom section was kept")
	}
	ctx, rt := newRuntime(t)
	m, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if g := m.ExportedGlobal(flag); g == nil {
		t.Fatal("no flag export")
	} else if _, ok := g.(api.MutableGlobal); !ok {
		t.Fatal("flag is not mutable")
	}
}
