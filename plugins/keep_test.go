package plugins

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/segd/segd/rules"
)

// TestLoadKeeping: after LoadKeeping, the predicates made before judge
// with the previous version and those made after with the new one, both
// at once, until ReleasePrevious, after which the old ones fall forward
// to the new version; a plain Load swaps every predicate at once.
func TestLoadKeeping(t *testing.T) {
	t.Parallel()
	reg, err := setup(t, Options{}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref := rules.PluginRef{Name: "amount", Params: map[string]any{"min": 5}}
	ev := events(64, map[string]any{"amount": 5.0})
	count := func(pred rules.EventPredicate) int {
		t.Helper()
		out := rules.NewBits(len(ev))
		if err := pred.MatchEvents(ctx, ev, out); err != nil {
			t.Fatal(err)
		}
		return out.Count()
	}
	version := func(pred rules.EventPredicate) string {
		return pred.(interface{ PluginVersion() string }).PluginVersion()
	}
	old, err := reg.EventPredicate(ref)
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := reg.Status("amount")
	ge, err := os.ReadFile(filepath.Join(wasmDir, "amount_ge.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.LoadKeeping(ctx, "amount", ge, Manifest{}); err != nil {
		t.Fatal(err)
	}
	v2, _ := reg.Status("amount")
	if v2.Version == v1.Version {
		t.Fatal("the second version has the first's digest")
	}
	fresh, err := reg.EventPredicate(ref)
	if err != nil {
		t.Fatal(err)
	}
	if n, m := count(old), count(fresh); n != 0 || m != 64 {
		t.Fatalf("while the previous version is kept: the old predicate matches %d (want 0: amount > 5), the new one %d (want 64: amount >= 5)", n, m)
	}
	if version(old) != v1.Version || version(fresh) != v2.Version {
		t.Fatalf("predicate versions %.12s, %.12s; want %.12s, %.12s", version(old), version(fresh), v1.Version, v2.Version)
	}
	if got := reg.Previous("amount"); !slices.Equal(got, []string{v1.Version}) {
		t.Fatalf("Previous: %v", got)
	}
	if got := reg.ReleasePrevious("amount"); !slices.Equal(got, []string{v1.Version}) {
		t.Fatalf("ReleasePrevious: %v", got)
	}
	if n := count(old); n != 64 || version(old) != v2.Version {
		t.Fatalf("after ReleasePrevious the old predicate matches %d on %.12s; want 64 on the current version", n, version(old))
	}
	if got := reg.Previous("amount"); len(got) != 0 {
		t.Fatalf("Previous after the release: %v", got)
	}

	// A plain Load keeps nothing: every predicate moves at once.
	amount, err := os.ReadFile(filepath.Join(wasmDir, "amount.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Load(ctx, "amount", amount, Manifest{}); err != nil {
		t.Fatal(err)
	}
	if n, m := count(old), count(fresh); n != 0 || m != 0 || len(reg.Previous("amount")) != 0 {
		t.Fatalf("after Load: %d and %d matches, previous %v; want 0, 0 and none", n, m, reg.Previous("amount"))
	}
}
