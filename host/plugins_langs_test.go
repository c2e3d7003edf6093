package host

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// langRules pairs each Rust and C example plugin with the same condition
// written as an expr. (plugins.TestExamplesMatchNative holds the Rust
// scoring model to the same native Go reference as the Go one.)
const langRules = `
segments:
  - id: big_c
    did: {event: checkout, where: {plugin: amount_c, params: {min: 100}}, last: 7d}
  - id: big_expr
    did: {event: checkout, where: 'type(props.amount) == "float" && props.amount > 100', last: 7d}
  - id: score_rust
    did:
      event: checkout
      where: {plugin: scoring_rs, params: {weights: {amount: 0.01, items: 0.3, premium: 1.5},
              caps: {amount: 100}, bias: -2, logistic: true, threshold: 0.6}}
      last: 7d
  - id: score_expr
    did:
      event: checkout
      # The same model, summed in the plugin's order (bias, then features
      # by name); the cut is logit(0.6) = math.Log(0.6/(1-0.6)).
      where: >-
        -2 + 0.01 * (type(props.amount) == "float" ? min(props.amount, 100) : 0)
        + 0.3 * (type(props.items) == "float" ? props.items : 0)
        + 1.5 * (props.premium == true ? 1 : 0) >= 0.4054651081081642
      last: 7d
  - id: words_rust
    did: {event: search, where: {plugin: tokens, params: {prop: term, words: [laptop, iphone, usb, cable]}}, last: 7d}
  - id: words_expr
    did:
      event: search
      where: 'type(props.term) == "string" && any(split(lower(props.term), " "), # in ["laptop", "iphone", "usb", "cable"])'
      last: 7d
`

// buildLangPlugins builds the Rust and C examples into dir, or skips (fails with SEGD_REQUIRE_TOOLCHAINS=1) when
// Debian's Rust or C toolchain is missing. Tools are called by path so that
// a rustup rustc on PATH without the wasm32-wasi target is not picked.
func buildLangPlugins(t *testing.T, dir string) {
	t.Helper()
	tool := func(env, def string) string {
		if p := os.Getenv(env); p != "" {
			return p
		}
		return def
	}
	cargo, rustc, clang := tool("SEGD_CARGO", "/usr/bin/cargo"), tool("SEGD_RUSTC", "/usr/bin/rustc"), tool("SEGD_CLANG", "clang")
	for _, p := range []string{cargo, rustc, clang} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("SEGD_REQUIRE_TOOLCHAINS") == "1" {
				t.Fatalf("SEGD_REQUIRE_TOOLCHAINS=1 but %v", err)
			}
			t.Skipf("%v (Debian packages rustc, cargo, libstd-rust-dev-wasm32, clang, lld, wasi-libc, libclang-rt-dev-wasm32)", err)
		}
	}
	run := func(cmd *exec.Cmd) {
		t.Helper()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	target := filepath.Join(t.TempDir(), "cargo")
	cmd := exec.Command(cargo, "build", "--offline", "--release", "--target", "wasm32-wasi")
	cmd.Dir, cmd.Env = "../examples/plugins", append(os.Environ(), "RUSTC="+rustc, "CARGO_TARGET_DIR="+target)
	run(cmd)
	for _, name := range []string{"scoring_rs", "tokens"} {
		data, err := os.ReadFile(filepath.Join(target, "wasm32-wasi/release", name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(exec.Command(clang, "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-I../sdk/c",
		"-o", filepath.Join(dir, "amount_c.wasm"), "../examples/plugins/amount-c/amount.c"))
}

// TestLanguagePluginsEndToEnd: segments judged by the Rust and C example
// plugins, fed over JetStream, hold exactly the users of the same
// conditions written as an expr.
func TestLanguagePluginsEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	buildLangPlugins(t, plugins)
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(langRules), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	ts := startServer(t, Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile},
		PluginsDir: plugins, Clock: engine.NewManualClock(now), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})

	rng := rand.New(rand.NewPCG(16, 16))
	vocab := []string{"laptop", "LAPTOP", "Laptops", "iphone", "case", "usb", "cable", "garden", "hose", "cheap", "lap", "top", ""}
	var users []string
	for i := range 80 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	for b := range 5 {
		var batch rules.Batch
		for range 80 {
			ev := rules.Event{User: users[rng.IntN(len(users))], Name: "checkout",
				Time: now.Add(-time.Duration(rng.IntN(10*24)) * time.Hour).UnixMilli(), Props: map[string]any{}}
			if rng.IntN(3) == 0 {
				// A search term of 0-3 words, one space apart (expr splits on
				// one space; the tokenizer on anything else too).
				ev.Name = "search"
				words := make([]string, rng.IntN(4))
				for i := range words {
					words[i] = vocab[rng.IntN(len(vocab))]
				}
				ev.Props["term"] = strings.Join(words, " ")
			} else {
				switch rng.IntN(6) {
				case 0:
					ev.Props["amount"] = fmt.Sprint(rng.IntN(300)) // a string is not a number
				case 1:
				default:
					ev.Props["amount"] = float64(rng.IntN(1100)) / 10
				}
				if rng.IntN(2) == 0 {
					ev.Props["items"] = float64(rng.IntN(8))
				}
				if rng.IntN(3) == 0 {
					ev.Props["premium"] = rng.IntN(2) == 0
				}
			}
			batch.Events = append(batch.Events, ev)
		}
		ts.publish(t, batch, fmt.Sprintf("b%d", b))
	}
	ctx := context.Background()
	for _, pair := range [][2]string{{"big_c", "big_expr"}, {"score_rust", "score_expr"}, {"words_rust", "words_expr"}} {
		members := 0
		for _, u := range users {
			a, err1 := ts.client.IsMember(ctx, u, pair[0])
			b, err2 := ts.client.IsMember(ctx, u, pair[1])
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if a != b {
				t.Errorf("%s: %s says %v, %s says %v", u, pair[0], a, pair[1], b)
			}
			if a {
				members++
			}
		}
		if members == 0 || members == len(users) {
			t.Errorf("%s: %d of %d users are members: the data does not discriminate", pair[0], members, len(users))
		}
	}
	st, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Plugins {
		if p.State != "ok" || p.Batches == 0 {
			t.Errorf("plugin status %+v", p)
		}
	}
}
