package plugins

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/segd/segd/rules"
)

// amountEvents are events with amounts 0..n-1, for predicates amount > min.
func amountEvents(n int) []rules.Event {
	ev := make([]rules.Event, n)
	for i := range ev {
		ev[i] = rules.Event{User: "u", Name: "pay", Props: map[string]any{"amount": float64(i)}}
	}
	return ev
}

// judge runs pred over amountEvents(n) and checks the answer: amount > min.
func judge(t *testing.T, pred rules.EventPredicate, n int, min float64) {
	t.Helper()
	ev := amountEvents(n)
	out := rules.NewBits(n)
	if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
		t.Fatal(err)
	}
	for i := range ev {
		if out.Has(i) != (float64(i) > min) {
			t.Fatalf("min %v: event with amount %d judged %v", min, i, out.Has(i))
		}
	}
}

// TestClosedPredicatesReleasePools: predicates compiled for one request
// (a segment preview), each with parameters of its own, leave no warm pool
// behind once closed, while the pool of parameters a rule still holds
// stays; a new version initialises only the parameters in use.
func TestClosedPredicatesReleasePools(t *testing.T) {
	t.Parallel()
	reg, err := setup(t, Options{}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 50}})
	if err != nil {
		t.Fatal(err)
	}
	judge(t, saved, 100, 50)
	base, _ := reg.Status("amount")
	if base.Pools != 1 {
		t.Fatalf("one rule's parameters: %d pools", base.Pools)
	}
	for i := range 20 {
		min := float64(i)
		pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": min}})
		if err != nil {
			t.Fatal(err)
		}
		judge(t, pred, 100, min)
		// The same parameters as the rule's: closing must not take its pool.
		same, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 50}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []any{pred, same} {
			if err := c.(io.Closer).Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, _ := reg.Status("amount")
	if st.Pools != base.Pools || st.Instances > base.Instances {
		t.Fatalf("after 20 closed predicates with parameters of their own: %d pools, %d instances; before: %d, %d",
			st.Pools, st.Instances, base.Pools, base.Instances)
	}
	judge(t, saved, 100, 50) // the rule's predicate still works

	// A new version warms the parameters in use only.
	data, err := os.ReadFile(filepath.Join(wasmDir, "amount_ge.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := reg.Status("amount")
	if err := reg.Load(context.Background(), "amount", data, Manifest{}); err != nil {
		t.Fatal(err)
	}
	after, _ := reg.Status("amount")
	if after.Pools != 1 || after.Instantiated-before.Instantiated != 1 {
		t.Fatalf("a new version: %d pools, %d instances started; want the one set in use warmed",
			after.Pools, after.Instantiated-before.Instantiated)
	}
}

// TestPoolsBounded: predicates that are never closed cannot grow the pools
// past Options.MaxPools; a predicate whose pool was closed still works.
func TestPoolsBounded(t *testing.T) {
	t.Parallel()
	reg, err := setup(t, Options{MaxPools: 3}, testPlugin{name: "amount"})
	if err != nil {
		t.Fatal(err)
	}
	var preds []rules.EventPredicate
	for i := range 12 {
		pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": float64(i)}})
		if err != nil {
			t.Fatal(err)
		}
		judge(t, pred, 40, float64(i))
		preds = append(preds, pred)
		if st, _ := reg.Status("amount"); st.Pools > 3 {
			t.Fatalf("after %d predicates: %d pools, over the limit of 3", i+1, st.Pools)
		}
	}
	judge(t, preds[0], 40, 0) // its pool was closed: it starts one again
	if st, _ := reg.Status("amount"); st.Pools > 3 {
		t.Fatalf("%d pools, over the limit of 3", st.Pools)
	}
}

// TestIsolatedBatchesLeaveHealthAlone: batches judged for a request (a
// preview replaying old batches that made the plugin trap) fail for the
// request but do not mark the plugin failed for the rules that use it.
func TestIsolatedBatchesLeaveHealthAlone(t *testing.T) {
	t.Parallel()
	reg, err := setup(t, Options{}, testPlugin{name: "flaky", manifest: "fail_after: 2\n"})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := reg.EventPredicate(rules.PluginRef{Name: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	boom := []rules.Event{{User: "u", Name: "x", Props: map[string]any{"boom": true}}}
	ctx := Isolated(context.Background())
	for i := range 4 {
		if err := pred.MatchEvents(ctx, boom, rules.NewBits(1)); !errors.Is(err, ErrTrap) {
			t.Fatalf("isolated batch %d: %v, want a trap", i, err)
		}
	}
	if st, _ := reg.Status("flaky"); st.State != StateOK {
		t.Fatalf("after isolated failures the plugin is %s (%s)", st.State, st.LastError)
	}
	ok := []rules.Event{{User: "u", Name: "x", Props: map[string]any{"ok": true}}}
	out := rules.NewBits(1)
	if err := pred.MatchEvents(context.Background(), ok, out); err != nil || !out.Has(0) {
		t.Fatalf("a rule's batch after them: %v, matched %v", err, out.Has(0))
	}
	// The same failures outside a request mark it failed, as before.
	for range 2 {
		_ = pred.MatchEvents(context.Background(), boom, rules.NewBits(1))
	}
	if st, _ := reg.Status("flaky"); st.State != StateFailed {
		t.Fatalf("after a rule's failures the plugin is %s", st.State)
	}
	if err := pred.MatchEvents(ctx, ok, rules.NewBits(1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("an isolated batch of a failed plugin: %v, want it to fail fast", err)
	}
}
