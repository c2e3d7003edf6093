package bus

import (
	"encoding/binary"
	"math"
	"strings"
	"unsafe"
)

// cacheSlots is the size of the string caches; strings longer than
// maxCached bytes are not cached.
const (
	cacheSlots = 1024
	maxCached  = 256
)

type boxed struct {
	s string
	v any
}

// intern returns s as a string, the same one for the same text while
// it stays in the cache. s may be a view of the message: what is kept is
// a copy.
func (d *BatchDecoder) intern(s string) string {
	if len(s) > maxCached {
		return strings.Clone(s)
	}
	if d.strs == nil {
		d.strs = new([cacheSlots]string)
	}
	slot := &d.strs[cacheHash(s)%cacheSlots]
	if *slot != s {
		*slot = strings.Clone(s)
	}
	return *slot
}

// box returns s as an any holding a string, boxed once while it stays in
// the cache.
func (d *BatchDecoder) box(s []byte) any {
	if len(s) > maxCached {
		return string(s)
	}
	if d.vals == nil {
		d.vals = new([cacheSlots]boxed)
	}
	slot := &d.vals[cacheHash(unsafeString(s))%cacheSlots]
	if slot.s != string(s) || slot.v == nil {
		slot.s = string(s)
		slot.v = slot.s
	}
	return slot.v
}

// cacheHash is a quick hash of a short string (FNV-1a over 8-byte words).
func cacheHash(s string) uint64 {
	h := uint64(14695981039346656037) ^ uint64(len(s))
	for len(s) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s), 8))) * 1099511628211
		s = s[8:]
	}
	var tail uint64
	for i := 0; i < len(s); i++ {
		tail |= uint64(s[i]) << (8 * i)
	}
	h = (h ^ tail) * 1099511628211
	return h ^ h>>29
}

// smallFloats are the any values of the whole numbers 0..255, boxed once
// (an any of a float64 otherwise costs an allocation).
var smallFloats = func() (t [256]any) {
	for i := range t {
		t[i] = float64(i)
	}
	return t
}()

func boxFloat(f float64) any {
	if f >= 0 && f < float64(len(smallFloats)) && f == math.Trunc(f) && !math.Signbit(f) {
		return smallFloats[int(f)]
	}
	return f
}
