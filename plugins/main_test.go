package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Test modules are built once per test binary from source (examples and
// testdata), into wasmDir; every test shares one compilation cache dir, so
// each module is compiled by wazero once per run.
var (
	wasmDir  string
	cacheDir string
	wabtErr  error // why the .wat example could not be built, if it could not
)

// guests maps a module name to its Go package directory (relative to the
// module root) and extra build flags.
var guests = map[string]struct {
	pkg   string
	flags []string
}{
	"geofence":     {pkg: "examples/plugins/geofence"},
	"scoring":      {pkg: "examples/plugins/scoring"},
	"searchclass":  {pkg: "examples/plugins/searchclass"},
	"amount":       {pkg: "plugins/testdata/amount"},
	"amount_ge":    {pkg: "plugins/testdata/amount", flags: []string{"-ldflags=-X main.op=ge"}},
	"amount_key":   {pkg: "plugins/testdata/amount", flags: []string{"-ldflags=-X main.api=key"}},
	"amount_batch": {pkg: "plugins/testdata/amount", flags: []string{"-ldflags=-X main.api=batch"}},
	"amount_only":  {pkg: "plugins/testdata/amount", flags: []string{"-ldflags=-X main.api=only"}},
	"loop":         {pkg: "plugins/testdata/loop"},
	"membomb":      {pkg: "plugins/testdata/membomb"},
	"panic":        {pkg: "plugins/testdata/panic"},
	"trap":         {pkg: "plugins/testdata/trap"},
	"badimport":    {pkg: "plugins/testdata/badimport"},
	"abi2":         {pkg: "plugins/testdata/abi2"},
	"noexports":    {pkg: "plugins/testdata/noexports"},
	"logspam":      {pkg: "plugins/testdata/logspam"},
	"probe":        {pkg: "plugins/testdata/probe"},
	"flaky":        {pkg: "plugins/testdata/flaky"},
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "segd-plugins-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	wasmDir, cacheDir = filepath.Join(tmp, "wasm"), filepath.Join(tmp, "cache")
	if dir := os.Getenv("SEGD_WASM_TEST_CACHE"); dir != "" {
		// A persistent compilation cache makes later runs (and -race runs,
		// where wazero's compiler is slow) skip compiling.
		cacheDir = dir
	}
	_ = os.MkdirAll(wasmDir, 0o755)
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for name, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			args := append([]string{"build", "-buildmode=c-shared"}, g.flags...)
			args = append(args, "-o", filepath.Join(wasmDir, name+".wasm"), "./"+g.pkg)
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("go build %s: %v\n%s", g.pkg, err, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		fmt.Fprintln(os.Stderr, strings.Join(errs, "\n"))
		return 1
	}
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		wabtErr = fmt.Errorf("wat2wasm not found (install Debian package wabt): %w", err)
	} else {
		for name, src := range map[string]string{
			"amountwat": "examples/plugins/amount-wat/amount.wat",
			"startloop": "plugins/testdata/startloop/startloop.wat",
			"dupprops":  "plugins/testdata/dupprops/dupprops.wat",
		} {
			cmd := exec.Command("wat2wasm", filepath.Join(root, src), "-o", filepath.Join(wasmDir, name+".wasm"))
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "wat2wasm %s: %v\n%s", src, err, out)
				return 1
			}
		}
	}
	buildLangs(root, tmp)
	return m.Run()
}

// requireWabt skips the test when wat2wasm is missing, unless
// SEGD_REQUIRE_WABT=1, where it fails.
func requireWabt(t testing.TB) {
	t.Helper()
	if wabtErr == nil {
		return
	}
	if os.Getenv("SEGD_REQUIRE_WABT") == "1" {
		t.Fatalf("SEGD_REQUIRE_WABT=1 but %v", wabtErr)
	}
	t.Skipf("skipping the WebAssembly-text plugin: %v (set SEGD_REQUIRE_WABT=1 to make this a failure)", wabtErr)
}

// plugin describes one plugin to put in a test directory.
type testPlugin struct {
	name, module, manifest string
}

// setup creates a plugin dir with the given plugins and loads it.
func setup(t testing.TB, opts Options, ps ...testPlugin) (*Registry, error) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range ps {
		mod := p.module
		if mod == "" {
			mod = p.name
		}
		data, err := os.ReadFile(filepath.Join(wasmDir, mod+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p.name+".wasm"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if p.manifest != "" {
			if err := os.WriteFile(filepath.Join(dir, p.name+".yaml"), []byte(p.manifest), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg, err := LoadDir(context.Background(), dir, opts)
	if reg != nil {
		t.Cleanup(func() { _ = reg.Close(context.Background()) })
	}
	return reg, err
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
