// Package sdk is what a segd plugin author imports to write a WASM predicate
// in Go.
//
// A plugin is a plain Go function over one event (or one user profile),
// registered from an init function of package main:
//
//	package main
//
//	import "github.com/segd/segd/sdk"
//
//	var min float64
//
//	func init() {
//		sdk.OnInit(func() error {
//			var p struct{ Min float64 `json:"min"` }
//			if err := sdk.Params(&p); err != nil {
//				return err
//			}
//			min = p.Min
//			return nil
//		})
//		sdk.HandleEvents(func(e sdk.Event) bool {
//			return e.Num("amount") >= min
//		})
//	}
//
//	func main() {}
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o amount.wasm .
//
// For speed, declare keys once (var amount = sdk.Prop("amount")) and read
// them with e.NumOf(amount) and friends, or register a batch handler
// (HandleEventBatch) that loops over whole columns (Batch.Nums) with no call
// per item: in a Go guest, function calls are the main cost. A plugin that
// reads properties only through its keys (which may come from the params)
// calls SendOnlyKeys, and the host then encodes only those (ABI 1.1).
//
// The SDK implements ABI 1.1 (see ABI.md in this directory): the host writes a
// whole batch into guest memory in a columnar binary layout and the SDK calls
// the handler once per item, with zero-copy typed access to the properties.
// Strings returned by accessors alias the batch buffer: they are valid only
// until the handler returns; copy them (strings.Clone) to keep them.
//
// The SDK is its own module, github.com/segd/segd/sdk, with no
// dependencies: a plugin's module requires it and nothing of the host (see
// docs/plugins.md for the walkthrough). Package sdktest encodes batches
// natively for plugin unit tests.
//
// main.main is never run in a reactor: register handlers from init. Parameters
// are available from the OnInit callback on (not during package
// initialisation). The package imports only the standard library; outside
// GOOS=wasip1 it builds too, so that plugin logic can be unit-tested natively
// with [Run].
package sdk
