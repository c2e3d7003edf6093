// Command amount is the test and benchmark plugin: amount > params.min,
// the same predicate as examples/plugins/amount-wat.
package main

import "github.com/segd/segd/sdk"

var min float64

func init() {
	sdk.OnInit(func() error {
		var p struct {
			Min float64 `json:"min"`
		}
		err := sdk.Params(&p)
		min = p.Min
		return err
	})
	sdk.HandleEvents(func(e sdk.Event) bool { return e.Num("amount") > min })
	sdk.HandleProfiles(func(p sdk.Profile) bool { return p.Num("amount") > min })
}

func main() {}
