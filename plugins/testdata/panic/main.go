// Command panic panics: recoverably in the handler when params.mode is
// "recover" (the SDK reports it as an error), fatally from a goroutine
// otherwise (the runtime exits: a trap for the host).
package main

import "github.com/segd/segd/sdk"

var mode string

func init() {
	sdk.OnInit(func() error {
		var p struct{ Mode string }
		err := sdk.Params(&p)
		mode = p.Mode
		return err
	})
	sdk.HandleEvents(func(e sdk.Event) bool {
		if mode == "recover" {
			panic("boom in handler")
		}
		done := make(chan bool)
		go func() { panic("boom in goroutine") }()
		return <-done
	})
}

func main() {}
