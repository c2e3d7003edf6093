// Command amount is the test and benchmark plugin: amount > params.min,
// the same predicate as examples/plugins/amount-wat.
package main

import "github.com/segd/segd/sdk"

var (
	min float64
	// op is "gt" (amount > min) or "ge" (>=), set with -ldflags=-X main.op=ge
	// to build a second version of the plugin.
	op = "gt"
	ge bool
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
	sdk.HandleEvents(func(e sdk.Event) bool {
		a := e.Num("amount")
		return a > min || ge && a == min
	})
	sdk.HandleProfiles(func(p sdk.Profile) bool { return p.Num("amount") > min })
}

func main() {}
