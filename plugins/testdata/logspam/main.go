// Command logspam logs in a tight loop on every batch, and matches all.
package main

import "github.com/segd/segd/sdk"

func init() {
	sdk.HandleEvents(func(e sdk.Event) bool {
		if e.Num("spam") > 0 {
			for i := 0; i < 20000; i++ {
				sdk.Log(sdk.LevelInfo, "spam spam spam")
			}
			println("stderr spam")
		}
		return true
	})
}

func main() {}
