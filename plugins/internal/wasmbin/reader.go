// Package wasmbin reads the WebAssembly binary format: a Reader of its
// primitive encodings, shared by the plugin host's passes over untrusted
// modules, and CheckLimits, which bounds every count and size a module
// declares before a decoder allocates for it.
package wasmbin

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Reader decodes the binary format from B at Off. The first error sticks
// in Err and later reads return zero values, so a caller checks Err once
// after a run of reads.
type Reader struct {
	B   []byte
	Off int
	Err error
}

// ErrShort is the error of a read past the end.
var ErrShort = errors.New("unexpected end")

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.Err != nil || r.Off >= len(r.B) {
		r.Err = ErrShort
		return 0
	}
	c := r.B[r.Off]
	r.Off++
	return c
}

// Skip moves past n bytes.
func (r *Reader) Skip(n int) {
	if r.Err != nil || n < 0 || r.Off+n > len(r.B) {
		r.Err = ErrShort
		return
	}
	r.Off += n
}

// Rest returns the bytes not read yet.
func (r *Reader) Rest() []byte { return r.B[r.Off:] }

// Left returns how many bytes are not read yet.
func (r *Reader) Left() int { return len(r.B) - r.Off }

// U32 reads an unsigned LEB128 of at most 5 bytes.
func (r *Reader) U32() uint32 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.B[r.Off:min(len(r.B), r.Off+5)])
	if n <= 0 || v > 1<<32-1 {
		r.Err = errors.New("bad unsigned LEB128")
		return 0
	}
	r.Off += n
	return uint32(v)
}

// U64 reads an unsigned LEB128 of at most 10 bytes (memory64 sizes and
// offsets).
func (r *Reader) U64() uint64 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.B[r.Off:min(len(r.B), r.Off+10)])
	if n <= 0 {
		r.Err = errors.New("bad unsigned LEB128")
		return 0
	}
	r.Off += n
	return v
}

// S64 moves past a signed LEB128 of at most 10 bytes (block types,
// constants).
func (r *Reader) S64() {
	for i := 0; i < 10 && r.Err == nil; i++ {
		if r.Byte()&0x80 == 0 {
			return
		}
	}
	if r.Err == nil {
		r.Err = errors.New("bad signed LEB128")
	}
}

// Name reads a length-prefixed UTF-8 name.
func (r *Reader) Name() string {
	n := r.U32()
	if r.Err != nil || uint64(r.Off)+uint64(n) > uint64(len(r.B)) {
		r.Err = ErrShort
		return ""
	}
	s := string(r.B[r.Off : r.Off+int(n)])
	r.Off += int(n)
	return s
}

// Section reads an id and a length-prefixed body (a module section, or a
// subsection of the name section) and returns the id and a Reader over the
// body. ok is false, with Err set, when the body runs past the end.
func (r *Reader) Section() (id byte, body Reader, ok bool) {
	id = r.Byte()
	size := r.U32()
	if r.Err != nil || uint64(r.Off)+uint64(size) > uint64(len(r.B)) {
		if r.Err == nil {
			r.Err = ErrShort
		}
		return id, Reader{}, false
	}
	body = Reader{B: r.B[r.Off : r.Off+int(size)]}
	r.Off += int(size)
	return id, body, true
}

// Import kinds, as the import section encodes them.
const (
	ImportFunction byte = 0
	ImportTable    byte = 1
	ImportMemory   byte = 2
	ImportGlobal   byte = 3
	ImportTag      byte = 4
)

// Import reads one entry of the import section: module and name, the kind
// (one of the Import* values) and, for a table, its minimum size. The
// descriptor is read past; an unknown kind sets Err.
func (r *Reader) Import() (mod, name string, kind byte, tableMin uint64) {
	mod, name = r.Name(), r.Name()
	switch kind = r.Byte(); kind {
	case ImportFunction:
		r.U32() // type index
	case ImportTable:
		r.Byte() // reference type
		tableMin, _, _ = r.Limits()
	case ImportMemory:
		r.Limits()
	case ImportGlobal:
		r.Skip(2) // value type, mutability
	case ImportTag:
		r.Byte() // attribute
		r.U32()  // type index
	default:
		if r.Err == nil {
			r.Err = fmt.Errorf("import %s.%s has unknown kind %d", mod, name, kind)
		}
	}
	return mod, name, kind, tableMin
}

// Memarg moves past a memory argument: alignment (with the multi-memory
// flag, then a memory index) and offset.
func (r *Reader) Memarg() {
	if r.U32()&0x40 != 0 {
		r.U32()
	}
	r.U64()
}

// Limits reads the limits of a table or memory.
func (r *Reader) Limits() (lo uint64, hi uint64, hasMax bool) {
	flags := r.U32()
	lo = r.U64()
	if flags&1 != 0 {
		hi, hasMax = r.U64(), true
	}
	return lo, hi, hasMax
}
