package analysis

import (
	"encoding/binary"
	"slices"
)

// entry is one event of a user's timeline: when, and which event (an id of
// the index's event dictionary).
type entry struct {
	t  int64 // Unix ms
	ev uint32
}

// timeline is a user's events in time order, encoded compactly: the first
// entry's time as a varint, every later one as the uvarint gap to the one
// before, each followed by the uvarint event id. A day of a typical user
// costs 2-4 bytes an event. Events that arrive later than a newer one wait
// in the index's tails until enough gather to merge them in.
type timeline struct {
	data []byte
	last int64 // the time of data's last entry
}

// maxTail is how many out-of-order entries a user may have waiting before
// they are merged into the timeline.
const maxTail = 32

// appendEntry appends an entry no older than the last one.
func (tl *timeline) appendEntry(e entry) {
	if len(tl.data) == 0 {
		tl.data = binary.AppendVarint(tl.data, e.t)
	} else {
		tl.data = binary.AppendUvarint(tl.data, uint64(e.t-tl.last))
	}
	tl.data = binary.AppendUvarint(tl.data, uint64(e.ev))
	tl.last = e.t
}

// first returns the time of the oldest encoded entry.
func (tl *timeline) first() (int64, bool) {
	if len(tl.data) == 0 {
		return 0, false
	}
	t, _ := binary.Varint(tl.data)
	return t, true
}

// decode appends the entries with lo <= t <= hi to buf, in time order.
func (tl *timeline) decode(buf []entry, lo, hi int64) []entry {
	data := tl.data
	var t int64
	for i := 0; len(data) > 0; i++ {
		if i == 0 {
			v, n := binary.Varint(data)
			t, data = v, data[n:]
		} else {
			v, n := binary.Uvarint(data)
			t, data = t+int64(v), data[n:]
		}
		ev, n := binary.Uvarint(data)
		data = data[n:]
		if t > hi {
			break
		}
		if t >= lo {
			buf = append(buf, entry{t, uint32(ev)})
		}
	}
	return buf
}

// rebuild re-encodes the timeline from entries in time order, dropping
// those older than cutoff, into a slice of exactly the size needed.
func (tl *timeline) rebuild(entries []entry, cutoff int64) {
	i, _ := slices.BinarySearchFunc(entries, cutoff, func(e entry, t int64) int {
		if e.t < t {
			return -1
		}
		return 1
	})
	entries = entries[i:]
	var scratch timeline
	scratch.data = make([]byte, 0, 4*len(entries))
	for _, e := range entries {
		scratch.appendEntry(e)
	}
	*tl = timeline{data: slices.Clip(scratch.data), last: scratch.last}
	if len(tl.data) == 0 {
		tl.data = nil
	}
}

// insertSorted inserts e into tail, which is in time order.
func insertSorted(tail []entry, e entry) []entry {
	i, _ := slices.BinarySearchFunc(tail, e.t, func(x entry, t int64) int {
		if x.t <= t {
			return -1
		}
		return 1
	})
	return slices.Insert(tail, i, e)
}

// mergeEntries merges two time-ordered runs into buf.
func mergeEntries(buf, a, b []entry) []entry {
	for len(a) > 0 && len(b) > 0 {
		if b[0].t < a[0].t {
			buf = append(buf, b[0])
			b = b[1:]
		} else {
			buf = append(buf, a[0])
			a = a[1:]
		}
	}
	buf = append(buf, a...)
	return append(buf, b...)
}
