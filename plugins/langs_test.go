package plugins

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The Rust and C example plugins are built with Debian's toolchains (Rust
// 1.63 with libstd-rust-dev-wasm32, clang with lld and wasi-libc), called by
// path so that another rustc on PATH (rustup's, without the wasm32-wasi
// target) is not picked. SEGD_CARGO, SEGD_RUSTC and SEGD_CLANG override the
// paths.
var (
	rustErr error // why the Rust examples could not be built, if they could not
	cErr    error // why the C example could not be built, if it could not
)

func toolPath(env, def string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	return def
}

// buildLangs builds the Rust examples (one cargo workspace) and the C example
// into wasmDir, recording why not in rustErr and cErr.
func buildLangs(root, tmp string) {
	cargo, rustc := toolPath("SEGD_CARGO", "/usr/bin/cargo"), toolPath("SEGD_RUSTC", "/usr/bin/rustc")
	rustErr = func() error {
		for _, p := range []string{cargo, rustc} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("%s not found (Debian packages rustc, cargo, libstd-rust-dev-wasm32): %w", p, err)
			}
		}
		target := filepath.Join(tmp, "cargo")
		cmd := exec.Command(cargo, "build", "--offline", "--release", "--target", "wasm32-wasi")
		cmd.Dir = filepath.Join(root, "examples/plugins")
		cmd.Env = append(os.Environ(), "RUSTC="+rustc, "CARGO_TARGET_DIR="+target)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cargo build of examples/plugins: %v\n%s", err, out)
		}
		copyOut := func(name, as string) error {
			data, err := os.ReadFile(filepath.Join(target, "wasm32-wasi/release", name+".wasm"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(wasmDir, as+".wasm"), data, 0o644)
		}
		for _, name := range []string{"amount_rs", "scoring_rs", "tokens"} {
			if err := copyOut(name, name); err != nil {
				return err
			}
		}
		// The amount example again, with its batch handler (for the
		// benchmarks and the tests of both paths).
		cmd = exec.Command(cargo, "build", "--offline", "--release", "--target", "wasm32-wasi", "-p", "amount-rs", "--features", "batch")
		cmd.Dir = filepath.Join(root, "examples/plugins")
		cmd.Env = append(os.Environ(), "RUSTC="+rustc, "CARGO_TARGET_DIR="+target)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cargo build of amount-rs --features batch: %v\n%s", err, out)
		}
		return copyOut("amount_rs", "amount_rs_batch")
	}()
	clang := toolPath("SEGD_CLANG", "clang")
	cErr = func() error {
		if _, err := exec.LookPath(clang); err != nil {
			return fmt.Errorf("%s not found (Debian packages clang, lld, wasi-libc, libclang-rt-dev-wasm32): %w", clang, err)
		}
		cmd := exec.Command(clang, cFlags(root, filepath.Join(wasmDir, "amount_c.wasm"))...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("clang examples/plugins/amount-c/amount.c: %v\n%s", err, out)
		}
		return nil
	}()
}

// cFlags is the build line of docs/plugins.md for the C example.
func cFlags(root, out string) []string {
	return []string{"--target=wasm32-wasi", "-O2", "-Wall", "-Werror", "-mexec-model=reactor",
		"-I" + filepath.Join(root, "sdk/c"), "-o", out, filepath.Join(root, "examples/plugins/amount-c/amount.c")}
}

// requireRust skips the test when the Rust examples could not be built,
// unless SEGD_REQUIRE_TOOLCHAINS=1 (CI), where it fails.
func requireRust(t testing.TB) { requireTool(t, "Rust", rustErr) }

// requireC is requireRust for the C example.
func requireC(t testing.TB) { requireTool(t, "C", cErr) }

func requireTool(t testing.TB, lang string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("SEGD_REQUIRE_TOOLCHAINS") == "1" {
		t.Fatalf("SEGD_REQUIRE_TOOLCHAINS=1 but the %s example plugin did not build: %v", lang, err)
	}
	t.Skipf("skipping the %s example plugin: %v (set SEGD_REQUIRE_TOOLCHAINS=1 to make this a failure)", lang, err)
}
