package engine

import (
	"math/bits"
	"slices"
)

// sinceBits sizes the containers of a since array: 4096 user ids each, so
// that a container's ids fit 16 bits, its insertions move at most 16 KiB,
// and the first write after a capture copies at most that much.
const (
	sinceBits = 12
	sinceLen  = 1 << sinceBits
	// sinceWords is the 64-bit words of a container's bitmap form.
	sinceWords = sinceLen / 64
	// sinceBitmap is the members past which a container keeps its ids as
	// a bitmap (512 bytes) instead of a sorted array (2 bytes a member);
	// it goes back below half as many.
	sinceBitmap = sinceWords * 8 / 2
)

// idMap maps dense user ids to non-zero uint32s (a segment's since: when
// each member entered, in Unix seconds),
// in memory that grows with the ids it holds, not with the id space: each
// container of sinceLen ids keeps its values in id order, beside their ids
// as a sorted array of the low 16 bits (6 bytes an entry) while it has few,
// or past sinceBitmap as a bitmap whose rank indexes the values (4 bytes an
// entry and 528 bytes a container), the way roaring's array and bitmap
// containers do. One dense array cost 4 bytes for every id up to the
// highest: for since, 4 GB for 10M users × 100 segments however small the
// segments. freeze gives a snapshot capture a view that never changes:
// the writer copies a container before its first change after that.
type idMap struct {
	boxes []*sinceBox
	// owned[k] == epoch: the writer made or copied container k since the
	// last freeze and changes it in place; otherwise a frozen view may
	// hold it, and it is copied first.
	owned []uint64
	epoch uint64
	// frozen: a frozen view holds the container list (copied before a
	// container is replaced).
	frozen bool
}

// sinceBox is one container: secs in id order, the ids in ids (sorted)
// or, when bits is set, as a bitmap.
type sinceBox struct {
	ids  []uint16
	bits *boxBits
	secs []uint32
}

// find returns where low's time is or would go in secs, and whether it is
// there.
func (b *sinceBox) find(low uint16) (int, bool) {
	if b.bits == nil {
		return slices.BinarySearch(b.ids, low)
	}
	w, bit := int(low>>6), uint64(1)<<(low&63)
	r := int(b.bits.before[w>>3]) + bits.OnesCount64(b.bits.words[w]&(bit-1))
	for _, x := range b.bits.words[w&^7 : w] {
		r += bits.OnesCount64(x)
	}
	return r, b.bits.words[w]&bit != 0
}

// boxBits is a container's ids as a bitmap, with the ones before every
// eighth word, so that a rank counts at most eight words.
type boxBits struct {
	words  [sinceWords]uint64
	before [sinceWords / 8]uint16
}

// flip sets or clears low's bit, which is the other way.
func (x *boxBits) flip(low uint16, on bool) {
	x.words[low>>6] ^= 1 << (low & 63)
	for k := int(low>>9) + 1; k < len(x.before); k++ {
		if on {
			x.before[k]++
		} else {
			x.before[k]--
		}
	}
}

func (b *sinceBox) get(low uint16) uint32 {
	if i, ok := b.find(low); ok {
		return b.secs[i]
	}
	return 0
}

func (b *sinceBox) clone() *sinceBox {
	c := &sinceBox{ids: slices.Clone(b.ids), secs: slices.Clone(b.secs)}
	if b.bits != nil {
		bits := *b.bits
		c.bits = &bits
	}
	return c
}

// set stores v for low (0 removes it).
func (b *sinceBox) set(low uint16, v uint32) {
	i, ok := b.find(low)
	switch {
	case ok && v != 0:
		b.secs[i] = v
	case ok:
		b.secs = slices.Delete(b.secs, i, i+1)
		if b.bits != nil {
			b.bits.flip(low, false)
			if len(b.secs) < sinceBitmap/2 {
				b.toArray()
			}
		} else {
			b.ids = slices.Delete(b.ids, i, i+1)
			if cap(b.secs) > 64 && len(b.secs) < cap(b.secs)/4 {
				b.ids, b.secs = slices.Clip(b.ids), slices.Clip(b.secs)
			}
		}
	case v != 0:
		if b.bits == nil && len(b.ids) >= sinceBitmap {
			b.toBitmap()
		}
		if len(b.secs) == cap(b.secs) {
			// Grow by a sixteenth, not append's doubling: the slack is
			// memory that every container keeps.
			c := min(sinceLen, (len(b.secs)+len(b.secs)/16+16)&^7)
			b.secs = append(make([]uint32, 0, c), b.secs...)
			if b.bits == nil {
				b.ids = append(make([]uint16, 0, c), b.ids...)
			}
		}
		b.secs = slices.Insert(b.secs, i, v)
		if b.bits != nil {
			b.bits.flip(low, true)
		} else {
			b.ids = slices.Insert(b.ids, i, low)
		}
	}
}

func (b *sinceBox) toBitmap() {
	b.bits = new(boxBits)
	for _, id := range b.ids {
		b.bits.words[id>>6] |= 1 << (id & 63)
	}
	n := 0
	for k := range b.bits.before {
		b.bits.before[k] = uint16(n)
		for _, x := range b.bits.words[8*k : 8*k+8] {
			n += bits.OnesCount64(x)
		}
	}
	b.ids = nil
}

func (b *sinceBox) toArray() {
	ids, _ := b.entries()
	b.ids, b.bits, b.secs = ids, nil, slices.Clip(b.secs)
}

// frozenIDMap is an idMap as of a freeze: never changed, read by any
// goroutine.
type frozenIDMap []*sinceBox

func (f frozenIDMap) get(u uint32) uint32 {
	if c := int(u >> sinceBits); c < len(f) && f[c] != nil {
		return f[c].get(uint16(u & (sinceLen - 1)))
	}
	return 0
}

// get returns u's value, 0 for none.
func (a *idMap) get(u uint32) uint32 { return frozenIDMap(a.boxes).get(u) }

// set stores v (not 0) for u; 0 removes u's entry.
func (a *idMap) set(u, v uint32) {
	k := int(u >> sinceBits)
	if k >= len(a.boxes) {
		if v == 0 {
			return
		}
		// Appending never changes what a frozen view holds: its length
		// ends before.
		a.boxes = append(a.boxes, make([]*sinceBox, k+1-len(a.boxes))...)
		a.owned = append(a.owned, make([]uint64, k+1-len(a.owned))...)
	}
	b := a.boxes[k]
	switch {
	case b == nil:
		if v == 0 {
			return
		}
		b = &sinceBox{}
		a.put(k, b)
	case a.owned[k] != a.epoch:
		b = b.clone()
		a.put(k, b)
	}
	b.set(uint16(u&(sinceLen-1)), v)
	if len(b.secs) == 0 {
		a.put(k, nil)
	}
}

// setSorted stores v (0: removes) for every id of us, which ascend. A
// container that gets many of them is rebuilt in one pass instead of
// moving its entries for each (a midnight can bring a million users into a
// segment in one step).
func (a *idMap) setSorted(us []uint32, v uint32) {
	for len(us) > 0 {
		k := us[0] >> sinceBits
		n := 1
		for n < len(us) && us[n]>>sinceBits == k {
			n++
		}
		if n < 16 {
			for _, u := range us[:n] {
				a.set(u, v)
			}
		} else {
			a.setBox(int(k), us[:n], v)
		}
		us = us[n:]
	}
}

// load sets the values of us (ascending, not in the map yet), as a
// snapshot read does: each container is built once, at its size.
func (a *idMap) load(us, vs []uint32) {
	for len(us) > 0 {
		k := int(us[0] >> sinceBits)
		n := 1
		for n < len(us) && int(us[n]>>sinceBits) == k {
			n++
		}
		b := &sinceBox{ids: make([]uint16, 0, n), secs: make([]uint32, 0, n)}
		for i, u := range us[:n] {
			if vs[i] != 0 {
				b.ids, b.secs = append(b.ids, uint16(u&(sinceLen-1))), append(b.secs, vs[i])
			}
		}
		if len(b.secs) > 0 {
			if len(b.secs) > sinceBitmap {
				b.toBitmap()
			}
			if k >= len(a.boxes) {
				a.boxes = append(a.boxes, make([]*sinceBox, k+1-len(a.boxes))...)
				a.owned = append(a.owned, make([]uint64, k+1-len(a.owned))...)
			}
			a.put(k, b)
		}
		us, vs = us[n:], vs[n:]
	}
}

// setBox is setSorted for ids of container k, by a merge.
func (a *idMap) setBox(k int, us []uint32, v uint32) {
	var old *sinceBox
	if k < len(a.boxes) {
		old = a.boxes[k]
	}
	var ids []uint16
	var secs []uint32
	if old != nil {
		ids, secs = old.entries()
	}
	outIDs := make([]uint16, 0, len(ids)+len(us))
	outSecs := make([]uint32, 0, len(ids)+len(us))
	i := 0
	for _, u := range us {
		low := uint16(u & (sinceLen - 1))
		for i < len(ids) && ids[i] < low {
			outIDs, outSecs = append(outIDs, ids[i]), append(outSecs, secs[i])
			i++
		}
		if i < len(ids) && ids[i] == low {
			i++ // replaced or removed
		}
		if v != 0 {
			outIDs, outSecs = append(outIDs, low), append(outSecs, v)
		}
	}
	outIDs, outSecs = append(outIDs, ids[i:]...), append(outSecs, secs[i:]...)
	if len(outSecs) == 0 {
		if old != nil {
			a.put(k, nil)
		}
		return
	}
	if k >= len(a.boxes) {
		a.boxes = append(a.boxes, make([]*sinceBox, k+1-len(a.boxes))...)
		a.owned = append(a.owned, make([]uint64, k+1-len(a.owned))...)
	}
	b := &sinceBox{ids: outIDs, secs: outSecs}
	if len(outSecs) > sinceBitmap {
		b.toBitmap()
	}
	a.put(k, b)
}

// entries returns the container's ids and values (sharing the values).
func (b *sinceBox) entries() ([]uint16, []uint32) {
	if b.bits == nil {
		return b.ids, b.secs
	}
	ids := make([]uint16, 0, len(b.secs))
	for w, x := range b.bits.words {
		for x != 0 {
			ids = append(ids, uint16(w<<6+bits.TrailingZeros64(x)))
			x &= x - 1
		}
	}
	return ids, b.secs
}

// put makes b container k, which the writer owns until the next freeze.
func (a *idMap) put(k int, b *sinceBox) {
	if a.frozen {
		a.boxes, a.frozen = slices.Clone(a.boxes), false
	}
	a.boxes[k], a.owned[k] = b, a.epoch
}

// freeze returns the map as it is now, which stays so: from then on the
// writer copies a container (and the container list) before its first
// change. It costs nothing per container: ownership is by epoch.
func (a *idMap) freeze() frozenIDMap {
	a.epoch++
	a.frozen = true
	return frozenIDMap(a.boxes[:len(a.boxes):len(a.boxes)])
}
