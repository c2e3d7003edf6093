// Command membomb allocates until it runs out of memory.
package main

import "github.com/segd/segd/sdk"

var hoard [][]byte

func init() {
	sdk.HandleEvents(func(e sdk.Event) bool {
		for {
			b := make([]byte, 1<<20)
			b[0] = 1
			hoard = append(hoard, b)
		}
	})
}

func main() {}
