// Command trap reads far outside its linear memory: a WebAssembly trap.
package main

import (
	"unsafe"

	"github.com/segd/segd/sdk"
)

var addr uintptr = 0xFFFFFFF0

func init() {
	sdk.HandleEvents(func(e sdk.Event) bool {
		return *(*byte)(unsafe.Pointer(addr)) == 1
	})
}

func main() {}
