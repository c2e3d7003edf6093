package preempt

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/segd/segd/plugins/internal/wasmbin"
)

// FuzzInstrument feeds Instrument and wasmbin.CheckLimits arbitrary bytes
// (seeded with valid modules): they must never panic, since they read
// untrusted plugin modules,
// and whatever module wazero accepts, it must either refuse with an error
// or turn into a module wazero also accepts (a renumbering or encoding
// mistake shows up as a validation error).
func FuzzInstrument(f *testing.F) {
	f.Add(spinModule())
	f.Add(envModule())
	f.Add(mod(sec(1, typeToI32), sec(3, []byte{0}), sec(10, body(0x41, 0x07, 0x0b))))
	f.Add(mod(
		sec(1, typeVoid, typeI32),
		sec(3, []byte{0}, []byte{1}),
		sec(4, []byte{0x70, 0x00, 0x02}), // a funcref table of 2
		sec(7, export("f", 0, 0), export("g", 0, 1)),
		// an active element segment (form 0) and a declarative one with
		// expressions (form 7) naming functions
		sec(9, cat([]byte{0x00, 0x41, 0x00, 0x0b}, appendU32(nil, 2), []byte{0, 1}),
			[]byte{0x07, 0x70, 0x01, 0xd2, 0x01, 0x0b}),
		sec(10,
			body(0x41, 0x00, 0x11, 0x00, 0x00, 0x0b), // call_indirect type 0 table 0
			body(0x20, 0x00, 0x03, 0x40, 0x0b, 0x0b), // local.get 0 (leaves it), loop end
		),
	))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, in []byte) {
		// The host checks the declared sizes first (so does this test,
		// before wazero decodes anything); neither pass may panic.
		limitsErr := wasmbin.CheckLimits(in)
		out, err := Instrument(in, hostFn)
		if err != nil || limitsErr != nil {
			return
		}
		orig, err := rt.CompileModule(ctx, in)
		if err != nil {
			return // not a valid module to begin with
		}
		orig.Close(ctx)
		cm, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("wazero accepts the module but not its instrumented form: %v", err)
		}
		cm.Close(ctx)
	})
}
