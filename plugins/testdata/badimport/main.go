// Command badimport imports a function the host does not allow.
package main

import "github.com/segd/segd/sdk"

//go:wasmimport env steal_secrets
func stealSecrets() int32

func init() {
	sdk.HandleEvents(func(e sdk.Event) bool { return stealSecrets() == 1 })
}

func main() {}
