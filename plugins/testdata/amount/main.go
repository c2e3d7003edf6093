// Command amount is the test and benchmark plugin: amount > params.min,
// the same predicate as examples/plugins/amount-wat.
//
// Build variants (with -ldflags=-X main.NAME=VALUE):
//   - op=ge: amount >= min, a second version of the plugin;
//   - api=str (default): e.Num("amount"), the name looked up per event;
//   - api=key: e.NumOf(amount) with a Key resolved once per batch;
//   - api=batch: HandleEventBatch over the amount column;
//   - api=only: e.NumOf(amount) with sdk.SendOnlyKeys, and an event that
//     carries "other" never matches (it should never see it).
package main

import "github.com/segd/segd/sdk"

var (
	min float64
	// op is "gt" (amount > min) or "ge" (>=).
	op  = "gt"
	api = "str"
	ge  bool

	amount = sdk.Prop("amount")
)

func init() {
	sdk.OnInit(func() error {
		var p struct {
			Min float64 `json:"min"`
		}
		err := sdk.Params(&p)
		min, ge = p.Min, op == "ge"
		return err
	})
	switch api {
	case "only":
		sdk.SendOnlyKeys()
		sdk.HandleEvents(func(e sdk.Event) bool {
			return e.NumOf(amount) > min && !e.Has("other")
		})
	case "key":
		sdk.HandleEvents(func(e sdk.Event) bool {
			a := e.NumOf(amount)
			return a > min || ge && a == min
		})
	case "batch":
		sdk.HandleEventBatch(func(b *sdk.Batch, out sdk.Bits) {
			vals, types := b.Nums(amount)
			types = types[:len(vals)]
			for i, a := range vals {
				if types[i] == sdk.Number && (a > min || ge && a == min) {
					out.Set(i)
				}
			}
		})
	default:
		sdk.HandleEvents(func(e sdk.Event) bool {
			a := e.Num("amount")
			return a > min || ge && a == min
		})
	}
	sdk.HandleProfiles(func(p sdk.Profile) bool { return p.Num("amount") > min })
}

func main() {}
