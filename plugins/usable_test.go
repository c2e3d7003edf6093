package plugins

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/segd/segd/rules"
)

// TestOnUsable: the registry tells the host when a plugin that failed a
// batch judges one again, and when a new version is loaded, so that the
// segments the failure left stale are rebuilt; it stays quiet otherwise.
func TestOnUsable(t *testing.T) {
	t.Parallel()
	reg, err := setup(t, Options{}, testPlugin{name: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heard []string
	reg.OnUsable(func(name string, newVersion bool) {
		mu.Lock()
		defer mu.Unlock()
		if newVersion {
			name += " (new version)"
		}
		heard = append(heard, name)
	})
	told := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(heard)
	}
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := pred.(interface{ PluginName() string }); !ok || p.PluginName() != "flaky" {
		t.Fatalf("the predicate does not name its plugin: %T", pred)
	}
	ctx := context.Background()
	good := []rules.Event{{Props: map[string]any{"ok": true}}}
	bad := []rules.Event{{Props: map[string]any{"boom": true}}}
	match := func(ev []rules.Event) error { return pred.MatchEvents(ctx, ev, rules.NewBits(len(ev))) }
	if err := match(good); err != nil {
		t.Fatal(err)
	}
	if got := told(); len(got) != 0 {
		t.Fatalf("told %v before any failure", got)
	}
	if err := match(bad); err == nil {
		t.Fatal("the bad batch succeeded")
	}
	if got := told(); len(got) != 0 {
		t.Fatalf("told %v after a failure", got)
	}
	if err := match(good); err != nil {
		t.Fatal(err)
	}
	if err := match(good); err != nil {
		t.Fatal(err)
	}
	if got := told(); !slices.Equal(got, []string{"flaky"}) {
		t.Fatalf("told %v, want flaky once: after the first success that follows a failure", got)
	}
	wasm, err := os.ReadFile(filepath.Join(wasmDir, "amount.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Load(ctx, "flaky", wasm, Manifest{}); err != nil {
		t.Fatal(err)
	}
	if got := told(); !slices.Equal(got, []string{"flaky", "flaky (new version)"}) {
		t.Fatalf("told %v, want the new version too", got)
	}
	reg.OnUsable(nil)
	if err := reg.Load(ctx, "flaky", wasm, Manifest{}); err != nil {
		t.Fatal(err)
	}
	if got := told(); len(got) != 2 {
		t.Fatalf("told %v after OnUsable(nil)", got)
	}
}
