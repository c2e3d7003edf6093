package engine

import "slices"

// sinceBits sizes the containers of a since array: 4096 user ids each, so
// that a container's ids fit 16 bits, its insertions move at most 16 KiB,
// and the first write after a capture copies at most that much.
const (
	sinceBits = 12
	sinceLen  = 1 << sinceBits
	// sinceDense is the members past which a container turns into a dense
	// array: 6 bytes a member sparse, 4 bytes an id dense.
	sinceDense = sinceLen * 4 / 6
)

// sinceArray is when each member of a segment entered (Unix seconds), in
// memory that grows with the members, not with the id space: each
// container of sinceLen ids holds its members as sorted (low id bits,
// time) pairs while sparse and a dense array of times past sinceDense
// members, as roaring's array and bitmap containers do. 6 bytes a member
// at most, where one dense array cost 4 bytes for every id up to the
// highest member (4 GB for 10M users × 100 segments however small the
// segments). A snapshot shares it in its pause (share copies the container
// pointers) and the writer copies a container before its first change
// after that, until unshare. Writer only, except frozen arrays.
type sinceArray struct {
	boxes []*sinceBox
	// shared[i] is set while container i is held by a capture.
	shared []bool
}

// sinceBox is one container: sparse (ids sorted, secs beside them) or,
// when dense is set, secs indexed by the low id bits, 0 for no member.
type sinceBox struct {
	ids   []uint16
	secs  []uint32
	dense bool
	n     int // members (dense: the entries that are not 0)
}

func (b *sinceBox) get(low uint16) uint32 {
	if b.dense {
		return b.secs[low]
	}
	if i, ok := slices.BinarySearch(b.ids, low); ok {
		return b.secs[i]
	}
	return 0
}

func (b *sinceBox) clone() *sinceBox {
	return &sinceBox{ids: slices.Clone(b.ids), secs: slices.Clone(b.secs), dense: b.dense, n: b.n}
}

// set stores v for low (0 removes it).
func (b *sinceBox) set(low uint16, v uint32) {
	if b.dense {
		old := b.secs[low]
		b.secs[low] = v
		switch {
		case old == 0 && v != 0:
			b.n++
		case old != 0 && v == 0:
			b.n--
			if b.n < sinceDense/4 {
				b.toSparse()
			}
		}
		return
	}
	i, ok := slices.BinarySearch(b.ids, low)
	switch {
	case ok && v != 0:
		b.secs[i] = v
	case ok:
		b.ids, b.secs = slices.Delete(b.ids, i, i+1), slices.Delete(b.secs, i, i+1)
		b.n--
		if cap(b.ids) > 64 && b.n < cap(b.ids)/4 {
			b.ids, b.secs = slices.Clip(b.ids), slices.Clip(b.secs)
		}
	case v != 0:
		if b.n >= sinceDense {
			b.toDense()
			b.secs[low] = v
			b.n++
			return
		}
		if len(b.ids) == cap(b.ids) {
			// Grow by a quarter, not append's doubling: the slack is
			// memory that every container keeps.
			c := min(sinceDense, (len(b.ids)+len(b.ids)/4+16)&^7)
			b.ids = append(make([]uint16, 0, c), b.ids...)
			b.secs = append(make([]uint32, 0, c), b.secs...)
		}
		b.ids, b.secs = slices.Insert(b.ids, i, low), slices.Insert(b.secs, i, v)
		b.n++
	}
}

func (b *sinceBox) toDense() {
	secs := make([]uint32, sinceLen)
	for i, id := range b.ids {
		secs[id] = b.secs[i]
	}
	b.ids, b.secs, b.dense = nil, secs, true
}

func (b *sinceBox) toSparse() {
	ids, secs := make([]uint16, 0, b.n), make([]uint32, 0, b.n)
	for i, v := range b.secs {
		if v != 0 {
			ids, secs = append(ids, uint16(i)), append(secs, v)
		}
	}
	b.ids, b.secs, b.dense = ids, secs, false
}

// bytes is the memory the container's arrays hold.
func (b *sinceBox) bytes() int { return 2*cap(b.ids) + 4*cap(b.secs) + 64 }

// frozenSince is a since array as of a share: read-only.
type frozenSince []*sinceBox

func (f frozenSince) get(u uint32) uint32 {
	if c := int(u >> sinceBits); c < len(f) && f[c] != nil {
		return f[c].get(uint16(u & (sinceLen - 1)))
	}
	return 0
}

// get returns when u entered, 0 for no entry.
func (a *sinceArray) get(u uint32) uint32 { return frozenSince(a.boxes).get(u) }

// set records that u entered at v (Unix seconds); 0 removes u's entry.
func (a *sinceArray) set(u, v uint32) {
	k := int(u >> sinceBits)
	if k >= len(a.boxes) {
		if v == 0 {
			return
		}
		a.boxes = append(a.boxes, make([]*sinceBox, k+1-len(a.boxes))...)
		a.shared = append(a.shared, make([]bool, k+1-len(a.shared))...)
	}
	b := a.boxes[k]
	if b == nil {
		if v == 0 {
			return
		}
		b = &sinceBox{}
		a.boxes[k] = b
	} else if a.shared[k] {
		b = b.clone()
		a.boxes[k] = b
		a.shared[k] = false
	}
	b.set(uint16(u&(sinceLen-1)), v)
	if b.n == 0 {
		a.boxes[k] = nil
	}
}

// share returns the array as it is now, which stays so: the writer copies
// a container before changing it, until unshare.
func (a *sinceArray) share() frozenSince {
	for i := range a.shared {
		a.shared[i] = true
	}
	return frozenSince(slices.Clone(a.boxes))
}

// unshare ends copy-on-write once the capture is done with the array.
func (a *sinceArray) unshare() { clear(a.shared) }

// bytes is the memory the array holds, about: its containers and their
// index.
func (a *sinceArray) bytes() int {
	n := 9 * cap(a.boxes)
	for _, b := range a.boxes {
		if b != nil {
			n += b.bytes()
		}
	}
	return n
}
