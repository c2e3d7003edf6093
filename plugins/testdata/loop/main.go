// Command loop never returns from a batch.
package main

import "github.com/segd/segd/sdk"

var sink int

func init() {
	sdk.HandleEvents(func(e sdk.Event) bool {
		for {
			sink++
		}
	})
}

func main() {}
