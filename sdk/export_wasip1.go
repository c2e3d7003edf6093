//go:build wasip1

package sdk

import (
	"encoding/json"
	"errors"
	"unsafe"
)

// lastErr is the message of the last failed call, for segd_error.
var lastErr []byte

// errRegion reports a host that passed memory not obtained from segd_alloc.
var errRegion = errors.New("sdk: batch or answer is outside the buffer returned by segd_alloc")

// kinds returns the segd_kinds bit mask.
func kinds() uint32 {
	var k uint32
	if eventHandler != nil || eventBatch != nil {
		k |= KindEvents
	}
	if profileHandler != nil || profileBatch != nil {
		k |= KindProfiles
	}
	return k
}

// buf is the one buffer the host writes batches and params into. The Go
// garbage collector does not move objects, so its address is stable while
// the global references it.
var buf []byte

//go:wasmimport segd log
func segdLog(level int32, ptr unsafe.Pointer, n uint32)

func hostLog(level int32, msg string) {
	if len(msg) == 0 {
		return
	}
	segdLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

//go:wasmexport segd_abi_version
func segdABIVersion() uint32 { return ABIVersion }

//go:wasmexport segd_kinds
func segdKinds() uint32 { return kinds() }

//go:wasmexport segd_alloc
func segdAlloc(n uint32) uint32 {
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if n == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

// region returns buf[ptr-base : ptr-base+n], or nil if it is not inside buf.
func region(ptr, n uint32) []byte {
	if len(buf) == 0 {
		return nil
	}
	base := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	if ptr < base || uint64(ptr-base)+uint64(n) > uint64(len(buf)) {
		return nil
	}
	o := ptr - base
	return buf[o : o+n : o+n]
}

func fail(err error) int32 {
	lastErr = append(lastErr[:0], err.Error()...)
	return 1
}

//go:wasmexport segd_init
func segdInit(ptr, n uint32) int32 {
	p := region(ptr, n)
	if p == nil && n > 0 {
		return fail(errRegion)
	}
	if err := initParams(p); err != nil {
		return fail(err)
	}
	return 0
}

//go:wasmexport segd_match
func segdMatch(ptr, n, outPtr uint32) int32 {
	data := region(ptr, n)
	if data == nil || n < HeaderSize {
		return fail(errRegion)
	}
	items := le.Uint32(data[12:])
	words := (items + 63) / 64
	o := region(outPtr, 8*words)
	if o == nil || outPtr%8 != 0 {
		return fail(errRegion)
	}
	out := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(o))), words)
	if err := Run(data, out); err != nil {
		return fail(err)
	}
	return 0
}

//go:wasmexport segd_error
func segdError() uint64 {
	if len(lastErr) == 0 {
		return 0
	}
	p := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(lastErr))))
	return uint64(p)<<32 | uint64(len(lastErr))
}

// propsJSON keeps segd_props' answer alive until the host has read it.
var propsJSON []byte

//go:wasmexport segd_props
func segdProps() uint64 {
	names, ok := DeclaredProps()
	if !ok {
		return 0
	}
	propsJSON, _ = json.Marshal(names) // a []string always marshals
	p := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(propsJSON))))
	return uint64(p)<<32 | uint64(len(propsJSON))
}
