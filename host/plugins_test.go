package host

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// pluginRules holds the same condition twice: through the amount plugin
// (WebAssembly text, examples/plugins/amount-wat) and as an expr.
const pluginRules = `
segments:
  - id: big_plugin
    did:
      event: checkout
      where: {plugin: amount, params: {min: 100}}
      last: 7d
  - id: big_expr
    did:
      event: checkout
      where: 'type(props.amount) == "float" && props.amount > 100'
      last: 7d
`

// TestPluginSegmentEndToEnd: a segment judged by a WASM plugin, fed over
// JetStream, answers exactly like the same condition written as an expr,
// and segd's status reports the plugin with its interrupts (the inserted
// checks, or wazero's with PluginWazeroInterrupts).
func TestPluginSegmentEndToEnd(t *testing.T) {
	for _, wazero := range []bool{false, true} {
		t.Run(fmt.Sprintf("wazero-interrupts=%v", wazero), func(t *testing.T) {
			t.Parallel()
			runPluginSegmentEndToEnd(t, wazero)
		})
	}
}

func runPluginSegmentEndToEnd(t *testing.T, wazeroInterrupts bool) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		if os.Getenv("SEGD_REQUIRE_WABT") == "1" {
			t.Fatalf("SEGD_REQUIRE_WABT=1 but wat2wasm is missing: %v", err)
		}
		t.Skipf("wat2wasm not found (Debian package wabt): %v", err)
	}
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("wat2wasm", "../examples/plugins/amount-wat/amount.wat", "-o", filepath.Join(plugins, "amount.wasm")).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(plugins, "amount.yaml"), []byte("props: [amount]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(pluginRules), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	clock := engine.NewManualClock(now)
	ts := startServer(t, Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile},
		PluginsDir: plugins, PluginWazeroInterrupts: wazeroInterrupts, Clock: clock, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})

	rng := rand.New(rand.NewPCG(5, 5))
	amounts := []func() any{
		func() any { return float64(rng.IntN(200)) },
		func() any { return fmt.Sprint(rng.IntN(200)) }, // a string never matches
		func() any { return nil },
	}
	var users []string
	for i := range 40 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	for b := range 5 {
		var batch rules.Batch
		for range 200 {
			ev := rules.Event{User: users[rng.IntN(len(users))], Name: "checkout",
				Time: now.Add(-time.Duration(rng.IntN(10*24)) * time.Hour).UnixMilli()}
			if rng.IntN(5) > 0 {
				ev.Props = map[string]any{"amount": amounts[rng.IntN(len(amounts))](), "currency": "EUR"}
			}
			batch.Events = append(batch.Events, ev)
		}
		ts.publish(t, batch, fmt.Sprintf("b%d", b))
	}
	ctx := context.Background()
	members := 0
	for _, u := range users {
		viaPlugin, err1 := ts.client.IsMember(ctx, u, "big_plugin")
		viaExpr, err2 := ts.client.IsMember(ctx, u, "big_expr")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if viaPlugin != viaExpr {
			t.Errorf("%s: plugin says %v, expr says %v", u, viaPlugin, viaExpr)
		}
		if viaPlugin {
			members++
		}
	}
	if members == 0 || members == len(users) {
		t.Fatalf("%d of %d users are members: the data does not discriminate", members, len(users))
	}
	st, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Plugins) != 1 {
		t.Fatalf("status lists %d plugins, want 1: %+v", len(st.Plugins), st.Plugins)
	}
	p := st.Plugins[0]
	interrupt := "checks"
	if wazeroInterrupts {
		interrupt = "wazero"
	}
	if p.Name != "amount" || p.State != "ok" || p.Interrupt != interrupt || p.Batches == 0 || p.Items == 0 || p.Version == "" {
		t.Fatalf("plugin status %+v", p)
	}
}
