package engine

import (
	"errors"
	"slices"

	"github.com/segd/segd/host/internal/snapio"
)

// seqStore keeps a sequence leaf's times, per user, without a heap object
// per user: each user's times are one run of a shared arena of int64,
// arena[off:off+cap], which starts with the lengths of the user's lists
// (two uint32 a word) and then holds the lists one after the other, each
// sorted: the steps' times, then the then_not step's. A run that is full
// moves to the end of the arena with a quarter as much room again; the words it
// leaves are garbage, reclaimed by compacting when they are a quarter of
// the arena.
//
// Records live in chunks so that a snapshot capture can share them: the
// capture holds the chunk list and arena[:frozen], and until Release the
// writer copies a chunk before changing it and moves a run that lies below
// frozen before changing it (appends beyond frozen are unseen by the
// capture).
type seqStore struct {
	lists   int // the steps, and the then_not step if any
	head    int // header words: (lists+1)/2
	slot    slotIndex
	chunks  []*recChunk
	records int      // records made, free or not
	free    []uint32 // record numbers to reuse
	arena   []int64
	garbage int
	cow     bool
	frozen  int
}

// seqRec is one user's run; cap 0 marks a free record.
type seqRec struct {
	user, off, cap uint32
}

const recChunkSize = 1024

type recChunk struct {
	recs   [recChunkSize]seqRec
	shared bool
}

// newSeqStore keeps lists lists per user.
func newSeqStore(lists int) seqStore {
	return seqStore{lists: lists, head: (lists + 1) / 2}
}

func (st *seqStore) rec(i uint32) *seqRec { return &st.chunks[i/recChunkSize].recs[i%recChunkSize] }

// mutableRec returns record i to change, copying its chunk first if a
// capture holds it.
func (st *seqStore) mutableRec(i uint32) *seqRec {
	c := st.chunks[i/recChunkSize]
	if c.shared {
		n := &recChunk{recs: c.recs}
		st.chunks[i/recChunkSize] = n
		c = n
	}
	return &c.recs[i%recChunkSize]
}

func (st *seqStore) length(r seqRec, k int) int {
	return int(uint32(st.arena[int(r.off)+k/2] >> (32 * (k % 2))))
}

func (st *seqStore) setLength(r seqRec, k, n int) {
	w := &st.arena[int(r.off)+k/2]
	shift := 32 * (k % 2)
	*w = *w&^(0xffffffff<<shift) | int64(uint32(n))<<shift
}

// list returns list k of run r (sharing the arena).
func (st *seqStore) list(r seqRec, k int) []int64 {
	at := int(r.off) + st.head
	for j := range k {
		at += st.length(r, j)
	}
	return st.arena[at : at+st.length(r, k) : at+st.length(r, k)]
}

func (st *seqStore) used(r seqRec) int {
	n := st.head
	for k := range st.lists {
		n += st.length(r, k)
	}
	return n
}

// lookup returns u's record number.
func (st *seqStore) lookup(u uint32) (uint32, bool) { return st.slot.get(u) }

// slotIndex maps a dense user id to its record number, in chunks of
// chunkLen ids made on first use: an array load where a Go map cost a
// hash and a probe per event and per judged user (BenchmarkIngest100Rules).
// Entries hold the record number plus one; 0 is no record. Writer only:
// captures hold records, not the index. (An idMap, sparse per 4096 ids,
// took 2.4 of 18 bytes a user per sequence rule off
// BenchmarkRuleState100/mixed but cost 8% of BenchmarkIngest100Rules'
// CPU in cache misses.)
type slotIndex [][]uint32

func (x slotIndex) get(u uint32) (uint32, bool) {
	if c := int(u >> chunkBits); c < len(x) && x[c] != nil {
		if v := x[c][u&(chunkLen-1)]; v != 0 {
			return v - 1, true
		}
	}
	return 0, false
}

func (x *slotIndex) set(u, i uint32) {
	c := int(u >> chunkBits)
	for c >= len(*x) {
		*x = append(*x, nil)
	}
	if (*x)[c] == nil {
		(*x)[c] = make([]uint32, chunkLen)
	}
	(*x)[c][u&(chunkLen-1)] = i + 1
}

func (x slotIndex) remove(u uint32) {
	if c := int(u >> chunkBits); c < len(x) && x[c] != nil {
		x[c][u&(chunkLen-1)] = 0
	}
}

// add inserts time t in list k of user u.
func (st *seqStore) add(u uint32, k int, t int64) {
	i, ok := st.slot.get(u)
	if !ok {
		i = st.newRec(u)
	}
	r := st.mutableRec(i)
	used := st.used(*r)
	if used == int(r.cap) || (st.cow && int(r.off) < st.frozen) {
		st.move(r, used, used+max(2, used/4))
	}
	l := st.list(*r, k)
	p, _ := slices.BinarySearch(l, t)
	pos := st.listStart(*r, k) + p
	end := int(r.off) + used
	copy(st.arena[pos+1:end+1], st.arena[pos:end])
	st.arena[pos] = t
	st.setLength(*r, k, len(l)+1)
}

func (st *seqStore) listStart(r seqRec, k int) int {
	at := int(r.off) + st.head
	for j := range k {
		at += st.length(r, j)
	}
	return at
}

// newRec makes an empty record for u.
func (st *seqStore) newRec(u uint32) uint32 {
	var i uint32
	if n := len(st.free); n > 0 {
		i, st.free = st.free[n-1], st.free[:n-1]
	} else {
		i = uint32(st.records)
		st.records++
		if int(i) == len(st.chunks)*recChunkSize {
			st.chunks = append(st.chunks, &recChunk{})
		}
	}
	r := st.mutableRec(i)
	// Room for one time: most users of a rare event have one in the
	// window (BenchmarkRuleState100), and a second moves the run.
	*r = seqRec{user: u, off: uint32(len(st.arena)), cap: uint32(st.head + 1)}
	st.grow(st.head + 1)
	st.arena = append(st.arena, make([]int64, st.head+1)...)
	st.slot.set(u, i)
	return i
}

// grow makes room for n more words in the arena, by an eighth of it more
// than asked, not append's doubling: the arena is most of a sequence
// leaf's memory, and the room beyond its length is held too.
func (st *seqStore) grow(n int) {
	if len(st.arena)+n <= cap(st.arena) {
		return
	}
	a := make([]int64, len(st.arena), len(st.arena)+n+max(len(st.arena)/8, 64))
	copy(a, st.arena)
	st.arena = a
}

// move copies run r (used words) to the end of the arena with room for
// size words.
func (st *seqStore) move(r *seqRec, used, size int) {
	off := len(st.arena)
	st.grow(size)
	st.arena = append(st.arena, st.arena[r.off:int(r.off)+used]...)
	st.arena = append(st.arena, make([]int64, size-used)...)
	st.garbage += int(r.cap)
	r.off, r.cap = uint32(off), uint32(size)
}

// trim drops the times before t from record i's lists, and the record if
// nothing is left; it reports whether the user still has times.
func (st *seqStore) trim(i uint32, t int64) bool {
	r := *st.rec(i)
	drop := false
	for k := range st.lists {
		if l := st.list(r, k); len(l) > 0 && l[0] < t {
			drop = true
			break
		}
	}
	if !drop {
		return true
	}
	rp := st.mutableRec(i)
	if st.cow && int(rp.off) < st.frozen {
		st.move(rp, st.used(*rp), int(rp.cap))
	}
	r = *rp
	var room [8]int // no allocation for up to 8 lists
	lens := room[:0]
	if st.lists > len(room) {
		lens = make([]int, 0, st.lists)
	}
	lens = lens[:st.lists]
	to, total := int(r.off)+st.head, 0
	for k := range st.lists {
		l := st.list(r, k)
		p, _ := slices.BinarySearch(l, t)
		lens[k] = len(l) - p
		total += lens[k]
		// Moving left never overwrites a list not yet read: the next
		// list starts after this one's end.
		copy(st.arena[to:], l[p:])
		to += lens[k]
	}
	for k, n := range lens {
		st.setLength(r, k, n)
	}
	if total == 0 {
		st.garbage += int(r.cap)
		st.slot.remove(r.user)
		*rp = seqRec{}
		st.free = append(st.free, i)
		return false
	}
	return true
}

// compact rewrites the arena without garbage when it is an eighth of it,
// leaving each run a quarter of its length to grow in. Not while a capture
// holds the arena.
func (st *seqStore) compact() {
	if st.cow || st.garbage < 1<<12 || 8*st.garbage < len(st.arena) {
		return
	}
	size := 0
	for _, c := range st.chunks {
		for j := range c.recs {
			if r := c.recs[j]; r.cap != 0 {
				used := st.used(r)
				size += used + max(1, used/4)
			}
		}
	}
	arena := make([]int64, 0, size)
	for _, c := range st.chunks {
		for j := range c.recs {
			r := &c.recs[j]
			if r.cap == 0 {
				continue
			}
			off, used := len(arena), st.used(*r)
			arena = append(arena, st.arena[r.off:int(r.off)+used]...)
			size := used + max(1, used/4)
			arena = append(arena, make([]int64, size-used)...)
			r.off, r.cap = uint32(off), uint32(size)
		}
	}
	st.arena, st.garbage = arena, 0
}

// freeze starts copy-on-write for a capture and returns what it holds.
func (st *seqStore) freeze() (chunks []*recChunk, arena []int64) {
	st.cow, st.frozen = true, len(st.arena)
	for _, c := range st.chunks {
		c.shared = true
	}
	return slices.Clone(st.chunks), st.arena[:len(st.arena):len(st.arena)]
}

func (st *seqStore) release() {
	st.cow, st.frozen = false, 0
	for _, c := range st.chunks {
		c.shared = false
	}
}

// writeSeqStore writes the users' lists in user order (so that equal
// states encode to equal bytes), from what freeze returned. It sorts
// (user, record) keys as plain integers: the records are in order of
// first sight, not of user.
func writeSeqStore(w *snapio.Writer, lists int, chunks []*recChunk, arena []int64) {
	head := (lists + 1) / 2
	keys := make([]uint64, 0, len(chunks)*recChunkSize)
	for ci, c := range chunks {
		for j := range c.recs {
			if c.recs[j].cap != 0 {
				keys = append(keys, uint64(c.recs[j].user)<<32|uint64(ci*recChunkSize+j))
			}
		}
	}
	slices.Sort(keys)
	// Room for a few times a user, so that the buffer grows once or
	// twice, not a doubling at a time from empty.
	w.Buf = slices.Grow(w.Buf, len(keys)*(3+4*lists))
	w.Uvarint(uint64(len(keys)))
	for _, k := range keys {
		i := uint32(k)
		r := chunks[i/recChunkSize].recs[i%recChunkSize]
		w.Uvarint(uint64(r.user))
		at := int(r.off) + head
		for k := range lists {
			n := int(uint32(arena[int(r.off)+k/2] >> (32 * (k % 2))))
			writeTimes(w, arena[at:at+n])
			at += n
		}
	}
}

var (
	errRepeatedUser    = errors.New("a user's times are written twice")
	errUsersOutOfOrder = errors.New("users' times out of user order")
)

// readSeqStore reads what writeSeqStore wrote. It lays the runs out in
// the arena directly (each with a quarter of its length to grow in, as
// compact leaves them), not through add: a million users' times load in
// one pass with no insertion or moves.
func readSeqStore(r *snapio.Reader, lists int) seqStore {
	st := newSeqStore(lists)
	n := r.Len(1 + st.lists)
	st.chunks = make([]*recChunk, 0, (n+recChunkSize-1)/recChunkSize)
	// A run is at least its header and most are a few times: start the
	// arena at four words a user, to grow from there.
	st.arena = make([]int64, 0, n*(st.head+3))
	var prev uint32
	for i := range n {
		u := uint32(r.Uvarint())
		if i > 0 && u <= prev && r.Err == nil {
			if u == prev {
				r.Err = errRepeatedUser
			} else {
				r.Err = errUsersOutOfOrder
			}
		}
		if r.Err != nil {
			return newSeqStore(lists)
		}
		prev = u
		off := len(st.arena)
		st.arena = append(st.arena, make([]int64, st.head)...)
		for k := range st.lists {
			m := r.Len(1)
			at := len(st.arena)
			var t int64
			sorted := true
			for j := range m {
				d := r.Varint()
				if j > 0 && d < 0 {
					sorted = false
				}
				t += d
				st.arena = append(st.arena, t)
			}
			if r.Err != nil {
				return newSeqStore(lists)
			}
			if !sorted { // damaged or foreign: keep the lists' invariant
				slices.Sort(st.arena[at:])
			}
			rec := seqRec{off: uint32(off)}
			st.setLength(rec, k, m)
		}
		used := len(st.arena) - off
		if used == st.head { // no times: add would have made no run
			st.arena = st.arena[:off]
			continue
		}
		size := used + max(1, used/4)
		st.arena = append(st.arena, make([]int64, size-used)...)
		idx := uint32(st.records)
		st.records++
		if int(idx) == len(st.chunks)*recChunkSize {
			st.chunks = append(st.chunks, &recChunk{})
		}
		*st.rec(idx) = seqRec{user: u, off: uint32(off), cap: uint32(size)}
		st.slot.set(u, idx)
	}
	// The arena grew by append (doubling: growing by an eighth at a time
	// copied it a dozen times over a load); keep an eighth of room.
	st.arena = append(make([]int64, 0, len(st.arena)+len(st.arena)/8), st.arena...)
	return st
}
