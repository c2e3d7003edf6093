package plugins

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/segd/segd/rules"
)

// docBlocks returns the fenced code blocks of lang in the markdown section
// that starts with heading (up to the next heading of the same level).
func docBlocks(t *testing.T, doc, heading, lang string) []string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/plugins.md has no section %q", heading)
	}
	sec := doc[i+len(heading)+2:]
	if j := strings.Index(sec, "\n"+strings.Fields(heading)[0]+" "); j >= 0 {
		sec = sec[:j]
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)\n```"+lang+"\n(.*?)\n```\n").FindAllStringSubmatch(sec, -1) {
		out = append(out, m[1]+"\n")
	}
	return out
}

// TestGoWalkthrough follows docs/plugins.md's Go walkthrough as a plugin
// author would, in an empty directory outside this module: go mod init,
// main.go as printed, the documented replace onto this checkout's sdk (the
// test is offline: GOPROXY=off), go mod tidy, the build line. The module it
// builds must then load and judge events. It fails if the SDK cannot be used
// from another module, or if the documented code or commands are wrong.
func TestGoWalkthrough(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	sh := docBlocks(t, string(doc), "## Writing a plugin in Go", "sh")
	code := docBlocks(t, string(doc), "## Writing a plugin in Go", "go")
	if len(sh) < 3 || len(code) < 1 {
		t.Fatalf("the walkthrough has %d sh and %d go blocks, want 3 and 1 (init, build, replace; main.go)", len(sh), len(code))
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := append(os.Environ(), "SEGD="+root, "GOPROXY=off", "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	runSh := func(dir, script string) {
		t.Helper()
		cmd := exec.Command("sh", "-ec", script)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in %s:\n%s\n%v\n%s", dir, script, err, out)
		}
	}
	runSh(tmp, sh[0]) // mkdir amount && cd amount; go mod init
	dir := filepath.Join(tmp, "amount")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(code[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	runSh(dir, sh[2]) // the replace onto the checkout
	runSh(dir, sh[1]) // go mod tidy; the build line
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "github.com/segd/segd/sdk") || strings.Contains(string(gomod), "github.com/segd/segd ") {
		t.Fatalf("go.mod should require the sdk module and nothing of the host:\n%s", gomod)
	}

	wasm, err := os.ReadFile(filepath.Join(dir, "amount.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "amount.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := LoadDir(context.Background(), pdir, Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 50.5}})
	if err != nil {
		t.Fatal(err)
	}
	ev := randomEvents(rand.New(rand.NewPCG(16, 1)), 500)
	out := rules.NewBits(len(ev))
	if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
		t.Fatal(err)
	}
	want := nativeAmount(50.5)
	for i, e := range ev {
		if out.Has(i) != want(e.Props) {
			t.Fatalf("event %d %v: plugin %v, native %v", i, e.Props, out.Has(i), want(e.Props))
		}
	}
	if out.Count() == 0 {
		t.Fatal("no event matched: the data does not exercise the plugin")
	}
}

// checkAmountModule loads the amount plugin module file and checks it
// against native Go on random events, events and profiles.
func checkAmountModule(t *testing.T, file string) {
	t.Helper()
	wasm, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "amount.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := LoadDir(context.Background(), pdir, Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	ref := rules.PluginRef{Name: "amount", Params: map[string]any{"min": 50.5}}
	pred, err := reg.EventPredicate(ref)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := reg.ProfilePredicate(ref)
	if err != nil {
		t.Fatal(err)
	}
	ev := randomEvents(rand.New(rand.NewPCG(16, 2)), 500)
	out, pout := rules.NewBits(len(ev)), rules.NewBits(len(ev))
	if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
		t.Fatal(err)
	}
	if err := pp.MatchProfiles(context.Background(), profilesOf(ev), pout); err != nil {
		t.Fatal(err)
	}
	want := nativeAmount(50.5)
	for i, e := range ev {
		if out.Has(i) != want(e.Props) || pout.Has(i) != want(e.Props) {
			t.Fatalf("item %d %v: event %v, profile %v, native %v", i, e.Props, out.Has(i), pout.Has(i), want(e.Props))
		}
	}
	if out.Count() == 0 {
		t.Fatal("no event matched: the data does not exercise the plugin")
	}
}

// TestRustWalkthrough follows docs/plugins.md's Rust section from an empty
// directory: cargo new, the Cargo.toml and src/lib.rs as printed (with the
// path of this checkout for SEGD), the build line with Debian's cargo
// first on PATH, offline. The module must load and judge like native Go.
func TestRustWalkthrough(t *testing.T) {
	t.Parallel()
	requireRust(t)
	doc, err := os.ReadFile("../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	const sec = "## Writing a plugin in Rust"
	sh, toml, code := docBlocks(t, string(doc), sec, "sh"), docBlocks(t, string(doc), sec, "toml"), docBlocks(t, string(doc), sec, "rust")
	if len(sh) != 2 || len(toml) != 1 || len(code) != 1 {
		t.Fatalf("the Rust section has %d sh, %d toml and %d rust blocks, want 2, 1 and 1", len(sh), len(toml), len(code))
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CARGO_TARGET_DIR=") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	// Debian's cargo and rustc (or SEGD_CARGO's and SEGD_RUSTC's) first.
	bin := t.TempDir()
	for name, env := range map[string]string{"cargo": "SEGD_CARGO", "rustc": "SEGD_RUSTC"} {
		if err := os.Symlink(toolPath(env, "/usr/bin/"+name), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "CARGO_NET_OFFLINE=true",
		"RUSTC="+filepath.Join(bin, "rustc"))
	runSh := func(dir, script string) {
		t.Helper()
		cmd := exec.Command("sh", "-ec", script)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in %s:\n%s\n%v\n%s", dir, script, err, out)
		}
	}
	runSh(tmp, sh[0])
	dir := filepath.Join(tmp, "amount")
	manifest := strings.ReplaceAll(toml[0], "SEGD/", root+"/")
	if err := os.WriteFile(filepath.Join(dir, "Cargo.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "src/lib.rs"), []byte(code[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	runSh(dir, sh[1])
	checkAmountModule(t, filepath.Join(dir, "target/wasm32-wasi/release/amount.wasm"))
}

// TestCDoc: the C plugin printed in docs/plugins.md is the example's source,
// and the documented build line builds it into a module that judges like
// native Go.
func TestCDoc(t *testing.T) {
	t.Parallel()
	requireC(t)
	doc, err := os.ReadFile("../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	const sec = "## Writing a plugin in C"
	sh, code := docBlocks(t, string(doc), sec, "sh"), docBlocks(t, string(doc), sec, "c")
	if len(sh) != 1 || len(code) != 1 {
		t.Fatalf("the C section has %d sh and %d c blocks, want 1 and 1", len(sh), len(code))
	}
	src, err := os.ReadFile("../examples/plugins/amount-c/amount.c")
	if err != nil {
		t.Fatal(err)
	}
	if code[0] != string(src) {
		t.Fatal("the C plugin in docs/plugins.md differs from examples/plugins/amount-c/amount.c: copy it over")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "amount.c"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-ec", strings.ReplaceAll(sh[0], "SEGD/", root+"/"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", sh[0], err, out)
	}
	checkAmountModule(t, filepath.Join(dir, "amount_c.wasm"))
}
