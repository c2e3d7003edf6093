// Command flaky traps on a batch that contains an event with boom: true,
// and otherwise matches events with ok: true.
package main

import (
	"unsafe"

	"github.com/segd/segd/sdk"
)

var addr uintptr = 0xFFFFFFF0

func init() {
	sdk.HandleEvents(func(e sdk.Event) bool {
		if e.Bool("boom") {
			return *(*byte)(unsafe.Pointer(addr)) == 1
		}
		return e.Bool("ok")
	})
}

func main() {}
