package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// batch is a decoded view over one batch buffer. It copies nothing: the
// accessors read the columns in place.
type batch struct {
	data                                     []byte
	kind                                     uint32
	n, k                                     int
	now                                      int64
	users, names, times, keys, types, values int
	cache                                    [8]keyCacheEntry
	ncache                                   int
	lastP                                    *byte
	lastL, lastIdx                           int
	// cols holds, for every Key registered with Prop, the typed views of
	// its column in this batch (empty views when the batch lacks the key).
	cols []column
}

// keyCacheEntry remembers where a key string (by its data pointer and length)
// sits in the batch's key table, so that e.Num("amount") in a loop costs a
// pointer compare instead of a string search.
type keyCacheEntry struct {
	p   *byte
	l   int
	idx int
}

var le = binary.LittleEndian

// errBatch describes a malformed batch.
func errBatch(format string, args ...any) error {
	return fmt.Errorf("sdk: malformed batch: "+format, args...)
}

// decode validates the header and the column bounds of data.
func (b *batch) decode(data []byte) error {
	*b = batch{data: data, cols: b.cols[:0]}
	if len(data) < HeaderSize {
		return errBatch("%d bytes, shorter than the %d-byte header", len(data), HeaderSize)
	}
	if m := le.Uint32(data[0:]); m != Magic {
		return errBatch("magic %#x, want %#x", m, Magic)
	}
	if v := le.Uint32(data[4:]); v>>16 != ABIMajor {
		return fmt.Errorf("sdk: batch has ABI major %d, this SDK speaks %d", v>>16, ABIMajor)
	}
	b.kind = le.Uint32(data[8:])
	b.n = int(le.Uint32(data[12:]))
	b.now = int64(le.Uint64(data[16:]))
	b.k = int(le.Uint32(data[24:]))
	if total := int(le.Uint32(data[28:])); total != len(data) {
		return errBatch("header says %d bytes, buffer has %d", total, len(data))
	}
	b.users = int(le.Uint32(data[32:]))
	b.names = int(le.Uint32(data[36:]))
	b.times = int(le.Uint32(data[40:]))
	b.keys = int(le.Uint32(data[44:]))
	b.types = int(le.Uint32(data[48:]))
	b.values = int(le.Uint32(data[52:]))
	heap, heapLen := int(le.Uint32(data[56:])), int(le.Uint32(data[60:]))
	n, k := b.n, b.k
	for _, c := range [...]struct {
		name     string
		off, len int
	}{
		{"users", b.users, 8 * n},
		{"names", b.names, 8 * n},
		{"times", b.times, 8 * n},
		{"keys", b.keys, 8 * k},
		{"types", b.types, k * n},
		{"values", b.values, 8 * k * n},
		{"heap", heap, heapLen},
	} {
		if c.off < HeaderSize || c.off+c.len > len(data) || c.len < 0 {
			return errBatch("column %s [%d, +%d) outside the %d-byte batch", c.name, c.off, c.len, len(data))
		}
	}
	if b.times%8 != 0 || b.values%8 != 0 {
		return errBatch("times (%d) or values (%d) not 8-byte aligned", b.times, b.values)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%8 != 0 {
		// Only reachable natively (segd_alloc hands out aligned buffers):
		// copy into an aligned buffer so that the typed views are legal.
		words := make([]uint64, (len(data)+7)/8)
		b.data = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(data))[:len(data):len(data)]
		copy(b.data, data)
	}
	b.resolveKeys()
	return nil
}

// str reads a string reference (u32 offset, u32 length) at off, zero-copy.
func (b *batch) str(off int) string {
	ref := le.Uint64(b.data[off:])
	p, l := int(uint32(ref)), int(ref>>32)
	if l == 0 {
		return ""
	}
	s := b.data[p : p+l]
	return unsafe.String(&s[0], l)
}

// bytes reads a string reference as a byte slice aliasing the batch.
func (b *batch) bytes(off int) []byte {
	ref := le.Uint64(b.data[off:])
	p, l := int(uint32(ref)), int(ref>>32)
	return b.data[p : p+l : p+l]
}

// key returns the index of name in the key table, or -1. Accessors check
// the most recent lookup inline (a string constant has a fixed address, so
// a handler reading one key costs a pointer compare) and call key otherwise.
func (b *batch) key(name string) int {
	p, l := unsafe.StringData(name), len(name)
	idx := -2
	for i := 0; i < b.ncache; i++ {
		if c := b.cache[i]; c.p == p && c.l == l {
			idx = c.idx
			break
		}
	}
	if idx == -2 {
		idx = -1
		for j := 0; j < b.k; j++ {
			if b.str(b.keys+8*j) == name {
				idx = j
				break
			}
		}
		if b.ncache < len(b.cache) {
			b.cache[b.ncache] = keyCacheEntry{p, l, idx}
			b.ncache++
		} else {
			b.cache[len(b.cache)-1] = keyCacheEntry{p, l, idx}
		}
	}
	b.lastP, b.lastL, b.lastIdx = p, l, idx
	return idx
}

// slot returns the slot (j*n + i) of property name of item i, or -1.
func (b *batch) slot(i int, name string) int {
	j := b.lastIdx
	if unsafe.StringData(name) != b.lastP || len(name) != b.lastL {
		j = b.key(name)
	}
	if j < 0 {
		return -1
	}
	return j*b.n + i
}

// typ returns the type of property name of item i, and its slot.
func (b *batch) typ(i int, name string) (Type, int) {
	s := b.slot(i, name)
	if s < 0 {
		return Absent, -1
	}
	return Type(b.data[b.types+s]), s
}

func (b *batch) num(i int, name string) (float64, bool) {
	j := b.lastIdx
	if unsafe.StringData(name) != b.lastP || len(name) != b.lastL {
		j = b.key(name)
	}
	if j < 0 {
		return 0, false
	}
	s := j*b.n + i
	if b.data[b.types+s] != byte(Number) {
		return 0, false
	}
	return math.Float64frombits(le.Uint64(b.data[b.values+8*s:])), true
}

func (b *batch) strProp(i int, name string) (string, bool) {
	t, j := b.typ(i, name)
	if t != String {
		return "", false
	}
	return b.str(b.values + 8*j), true
}

func (b *batch) boolProp(i int, name string) (bool, bool) {
	switch t, _ := b.typ(i, name); t {
	case True:
		return true, true
	case False:
		return false, true
	}
	return false, false
}

func (b *batch) jsonProp(i int, name string) []byte {
	t, j := b.typ(i, name)
	if t != JSON {
		return nil
	}
	return b.bytes(b.values + 8*j)
}
