package plugins

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/segd/segd/rules"
)

// TestAmountAPIs runs the three builds of the amount plugin (a name looked up
// per event, a Key, a batch handler over the column) with and without a
// props manifest, over events where amount is sometimes absent, a string or
// null, in batches that are split into chunks of odd sizes, and compares
// each answer with native Go.
func TestAmountAPIs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	ev := randomEvents(rng, 3000)
	for i := range ev {
		switch i % 97 {
		case 5:
			ev[i].Props["amount"] = nil
		case 7:
			ev[i].User, ev[i].Name = ev[i-1].User, "" // repeated user, no name
		case 8:
			ev[i].User = ev[i-1].User
		}
	}
	for _, mod := range []string{"amount", "amount_key", "amount_batch"} {
		for _, man := range []string{"", "props: [amount]\n", "props: [amount, term]\nmax_batch: 100\n", "max_batch: 64\nmax_batch_mib: 1\n", "props: [amount]\nomit: [user, name, time]\n"} {
			t.Run(fmt.Sprintf("%s/%q", mod, man), func(t *testing.T) {
				reg, err := setup(t, Options{}, testPlugin{name: "amount", module: mod, manifest: man})
				if err != nil {
					t.Fatal(err)
				}
				pred, err := reg.EventPredicate(rules.PluginRef{Name: "amount", Params: map[string]any{"min": 50}})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{1, 63, 64, 65, 1000, len(ev)} {
					batch := ev[len(ev)-n:]
					got, want := rules.NewBits(n), rules.NewBits(n)
					for i := range batch {
						if a, ok := batch[i].Props["amount"].(float64); ok && a > 50 {
							want.Set(i)
						}
					}
					if err := pred.MatchEvents(context.Background(), batch, got); err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("n=%d: word %d: got %#x, want %#x", n, i, got[i], want[i])
						}
					}
				}
			})
		}
	}
}

// TestDeclaredProps: a plugin that calls sdk.SendOnlyKeys (segd_props, ABI
// 1.1) is sent only its keys; a manifest's props still cap the list.
func TestDeclaredProps(t *testing.T) {
	t.Parallel()
	reg, err := setup(t, Options{},
		testPlugin{name: "only", module: "amount_only"},
		testPlugin{name: "capped", module: "amount_only", manifest: "props: [other]\n"},
		testPlugin{name: "plain", module: "amount_key"},
	)
	if err != nil {
		t.Fatal(err)
	}
	ev := events(50, map[string]any{"amount": 200.0, "other": 1.0, "currency": "EUR"})
	for name, want := range map[string]int{"only": 50, "capped": 0, "plain": 50} {
		pred, err := reg.EventPredicate(rules.PluginRef{Name: name, Params: map[string]any{"min": 100}})
		if err != nil {
			t.Fatal(err)
		}
		out := rules.NewBits(len(ev))
		if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out.Count() != want {
			t.Errorf("%s: %d of %d matched, want %d", name, out.Count(), len(ev), want)
		}
	}
	v := reg.plugins["only"].acquire()
	defer v.release()
	pl, err := v.pool(context.Background(), []byte(`{"min":100}`))
	if err != nil {
		t.Fatal(err)
	}
	in, err := pl.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pl.put(in, true)
	if !slices.Equal(in.props, []string{"amount"}) {
		t.Errorf("declared props %q, want [amount]", in.props)
	}
}

// TestDeclaredPropsOnce: a plugin whose segd_props lists a key more than
// once is sent each key once (the batch's key table held every repeat: 5
// keys here, each a column of every item), with a manifest capping the
// list or not. The module matches every event when its batch has exactly
// two keys.
func TestDeclaredPropsOnce(t *testing.T) {
	t.Parallel()
	requireWabt(t)
	reg, err := setup(t, Options{},
		testPlugin{name: "dup", module: "dupprops"},
		testPlugin{name: "dupcapped", module: "dupprops", manifest: "props: [other, amount, currency]\n"},
	)
	if err != nil {
		t.Fatal(err)
	}
	ev := events(70, map[string]any{"amount": 200.0, "other": 1.0, "currency": "EUR"})
	for _, name := range []string{"dup", "dupcapped"} {
		pred, err := reg.EventPredicate(rules.PluginRef{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		out := rules.NewBits(len(ev))
		if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out.Count() != len(ev) {
			t.Errorf("%s: %d of %d matched: the batch did not carry exactly the keys amount and other", name, out.Count(), len(ev))
		}
		v := reg.plugins[name].acquire()
		pl, err := v.pool(context.Background(), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		in, err := pl.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(in.props, []string{"amount", "other"}) {
			t.Errorf("%s: declared props %q, want [amount other]", name, in.props)
		}
		pl.put(in, true)
		v.release()
	}
}
