package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segd/segd/bus/api"
)

// TestPluginCommands pushes the amount plugin (built from WebAssembly
// text) with its manifest, lists and reads it, has a segment name it, is
// refused removing it while named and a module that is not one, then
// removes it.
func TestPluginCommands(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		if os.Getenv("SEGD_REQUIRE_WABT") == "1" {
			t.Fatalf("SEGD_REQUIRE_WABT=1 but wat2wasm is missing: %v", err)
		}
		t.Skipf("wat2wasm not found (Debian package wabt): %v", err)
	}
	dir := t.TempDir()
	wasm := filepath.Join(dir, "amount.wasm")
	if b, err := exec.Command("wat2wasm", "../../examples/plugins/amount-wat/amount.wat", "-o", wasm).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	url := startSegd(t)
	out, err := runSegd(t, "plugin", "push", wasm, "--manifest", "../../examples/plugins/amount-wat/amount.yaml", "--nats", url, "--author", "cli")
	if err != nil || !strings.Contains(out, "amount: version") {
		t.Fatalf("push: %v\n%s", err, out)
	}
	out, err = runSegd(t, "plugin", "ls", "--json", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	var list []api.Plugin
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Name != "amount" || list[0].Source != "store" || list[0].State != "ok" {
		t.Fatalf("ls --json: %v %+v\n%s", err, list, out)
	}
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("id: big_buyers\ndid: {event: checkout, where: {plugin: amount, params: {min: 100}}, last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runSegd(t, "rule", "apply", "-f", rules, "--wait", "--nats", url); err != nil {
		t.Fatalf("apply a rule naming the plugin: %v\n%s", err, out)
	}
	out, err = runSegd(t, "plugin", "get", "amount", "--nats", url)
	if err != nil || !strings.Contains(out, "big_buyers") || !strings.Contains(out, "props: [amount]") || !strings.Contains(out, "cli") {
		t.Fatalf("get: %v\n%s", err, out)
	}
	// A second version: both are kept, newest first; the first one's
	// module can be fetched by a prefix of its digest.
	v1, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	wasm2 := filepath.Join(dir, "amount-v2.wasm")
	if err := os.WriteFile(wasm2, append(append([]byte{}, v1...), 0, 5, 3, 'p', 'a', 'd', 0), 0o644); err != nil { // a custom section
		t.Fatal(err)
	}
	if out, err := runSegd(t, "plugin", "push", wasm2, "--name", "amount", "--manifest", "../../examples/plugins/amount-wat/amount.yaml", "--nats", url); err != nil {
		t.Fatalf("push a second version: %v\n%s", err, out)
	}
	out, err = runSegd(t, "plugin", "get", "amount", "--json", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	var got api.Plugin
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Versions) != 2 || got.Versions[0].Version != got.Version || got.Versions[1].Author != "cli" {
		t.Fatalf("get --json: %v %+v", err, got)
	}
	first := got.Versions[1].Version
	fetched := filepath.Join(dir, "fetched.wasm")
	out, err = runSegd(t, "plugin", "get", "amount", "--version", first[:10], "-o", fetched, "--nats", url)
	if err != nil || !strings.Contains(out, first) {
		t.Fatalf("get --version -o: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(fetched); err != nil || string(b) != string(v1) {
		t.Fatalf("the fetched module is not the first version (%d bytes, %v)", len(b), err)
	}
	if _, err := runSegd(t, "plugin", "get", "amount", "--version", "00000000", "--nats", url); err == nil || !strings.Contains(err.Error(), "no kept version") {
		t.Fatalf("get of a version not kept: %v", err)
	}
	if out, err := runSegd(t, "plugin", "rm", "amount", "--nats", url); err == nil || !strings.Contains(err.Error(), "big_buyers") {
		t.Fatalf("rm while a segment names it: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "amount2.wasm")
	if err := os.WriteFile(bad, []byte("not a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runSegd(t, "plugin", "push", bad, "--name", "amount", "--nats", url); err == nil || !strings.Contains(err.Error(), "stays") {
		t.Fatalf("push of a bad module: %v\n%s", err, out)
	}
	if out, err := runSegd(t, "rule", "rm", "big_buyers", "--nats", url); err != nil {
		t.Fatalf("rule rm: %v\n%s", err, out)
	}
	out, err = runSegd(t, "plugin", "rm", "amount", "--json", "--nats", url)
	if err != nil || !strings.Contains(out, `"name": "amount"`) {
		t.Fatalf("rm: %v\n%s", err, out)
	}
}
