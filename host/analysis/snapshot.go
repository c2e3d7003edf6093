package analysis

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/host/internal/snapio"
)

// stateVersion is the version of the index's state encoding.
const stateVersion = 1

// WriteState applies what is queued and appends the whole index to w. Call
// it on the goroutine that calls ObserveEvents (the engine's writer), so
// that the state matches the engine's at the same stream sequence.
func (ix *Index) WriteState(w *snapio.Writer) error { return ix.CaptureState().WriteTo(w) }

// StateCapture holds the index as it was at CaptureState until WriteTo
// (or Release): events observed meanwhile are queued, not applied, and
// queries wait, but ObserveEvents and StatsNow do not. A snapshot captures
// in its pause and encodes after it, beside ingest.
type StateCapture struct {
	ix   *Index
	done bool
}

// CaptureState applies the queued events and holds the index as it is;
// call WriteTo or Release once.
func (ix *Index) CaptureState() *StateCapture {
	ix.mu.Lock()
	ix.drain()
	ix.qmu.Lock()
	ix.capturing.Store(true)
	ix.taken.Broadcast() // ObserveEvents waiting for the drainer: go on
	ix.qmu.Unlock()
	return &StateCapture{ix: ix}
}

// WriteTo encodes the captured state (in the format WriteState writes)
// and releases the index.
func (c *StateCapture) WriteTo(w *snapio.Writer) error {
	if c.done {
		return errors.New("analysis: capture already written or released")
	}
	defer c.Release()
	return c.ix.writeLocked(w)
}

// Release lets the index apply events again; a no-op after WriteTo.
func (c *StateCapture) Release() {
	if !c.done {
		c.done = true
		c.ix.capturing.Store(false)
		c.ix.mu.Unlock()
	}
}

// writeLocked encodes the index; the caller holds mu.
func (ix *Index) writeLocked(w *snapio.Writer) error {
	w.U32(stateVersion)
	w.String(fmt.Sprintf("%s|%d", ix.loc.String(), ix.days))
	w.Varint(int64(ix.today))
	w.Uvarint(ix.stats.Events)
	w.Uvarint(ix.stats.Expired)
	w.Uvarint(ix.stats.Dropped)
	w.Uvarint(uint64(len(ix.names)))
	for ev, name := range ix.names {
		w.String(name)
		days := make([]Day, 0, len(ix.cells[ev]))
		for d := range ix.cells[ev] {
			days = append(days, d)
		}
		sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
		w.Uvarint(uint64(len(days)))
		for _, d := range days {
			c := ix.cells[ev][d]
			w.Varint(int64(d))
			w.Bitmap(c.users)
			w.Uvarint(uint64(len(c.counts.planes)))
			for _, p := range c.counts.planes {
				w.Bitmap(p)
			}
			w.Uvarint(c.total)
			props := make([]string, 0, len(c.sums))
			for k := range c.sums {
				props = append(props, k)
			}
			sort.Strings(props)
			w.Uvarint(uint64(len(props)))
			for _, k := range props {
				v := c.sums[k]
				w.String(k)
				w.Uvarint(uint64(len(v.users)))
				for i, u := range v.users {
					w.Uvarint(uint64(u))
					w.Float(v.vals[i])
				}
			}
		}
	}
	// Timelines up to the last user with one; firstDay has the same length.
	n := len(ix.tl)
	for n > 0 && len(ix.tl[n-1].data) == 0 && ix.firstDay[n-1] == noDay {
		n--
	}
	w.Uvarint(uint64(n))
	for u := range n {
		w.Bytes(ix.tl[u].data)
		w.Varint(ix.tl[u].last)
		w.Varint(int64(ix.firstDay[u]))
	}
	us := make([]uint32, 0, len(ix.tails))
	for u := range ix.tails {
		us = append(us, u)
	}
	sort.Slice(us, func(i, j int) bool { return us[i] < us[j] })
	w.Uvarint(uint64(len(us)))
	for _, u := range us {
		w.Uvarint(uint64(u))
		tail := ix.tails[u]
		w.Uvarint(uint64(len(tail)))
		for _, e := range tail {
			w.Varint(e.t)
			w.Uvarint(uint64(e.ev))
		}
	}
	days := make([]Day, 0, len(ix.newUsers))
	for d := range ix.newUsers {
		days = append(days, d)
	}
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	w.Uvarint(uint64(len(days)))
	for _, d := range days {
		w.Varint(int64(d))
		w.Uvarint(ix.newUsers[d])
	}
	return nil
}

// Restore replaces the index's content with a state written by
// WriteState. On an error the index is left empty.
func (ix *Index) Restore(r *snapio.Reader) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	defer ix.publish()
	if err := ix.restore(r); err != nil {
		ix.ids, ix.names, ix.cells = map[string]uint32{}, nil, nil
		ix.tl, ix.tails, ix.firstDay, ix.newUsers = nil, map[uint32][]entry{}, nil, map[Day]uint64{}
		ix.stats, ix.producerNames = Stats{}, 0
		return fmt.Errorf("analysis index: %w", err)
	}
	return nil
}

func (ix *Index) restore(r *snapio.Reader) error {
	if v := r.U32(); v != stateVersion {
		return fmt.Errorf("state version %d, want %d", v, stateVersion)
	}
	if cfg, want := r.String(), fmt.Sprintf("%s|%d", ix.loc.String(), ix.days); cfg != want {
		return fmt.Errorf("written for %q, running with %q (zone|days)", cfg, want)
	}
	ix.today = Day(r.Varint())
	ix.stats = Stats{Events: r.Uvarint(), Expired: r.Uvarint(), Dropped: r.Uvarint()}
	ne := r.Len(2)
	ix.ids, ix.names, ix.cells = make(map[string]uint32, ne), make([]string, 0, ne), make([]map[Day]*cell, 0, ne)
	ix.producerNames = 0
	for ev := range ne {
		name := r.String()
		ix.ids[name] = uint32(ev)
		ix.names = append(ix.names, name)
		if !strings.HasPrefix(name, "@") {
			ix.producerNames++
		}
		nd := r.Len(4)
		cells := make(map[Day]*cell, nd)
		for range nd {
			d := Day(r.Varint())
			c := &cell{users: r.Bitmap()}
			np := r.Len(1)
			c.counts.planes = make([]*roaring.Bitmap, np)
			for i := range c.counts.planes {
				c.counts.planes[i] = r.Bitmap()
			}
			c.total = r.Uvarint()
			if nprops := r.Len(2); nprops > 0 {
				c.sums = make(map[string]*values, nprops)
				for range nprops {
					k := r.String()
					nv := r.Len(9)
					v := &values{users: make([]uint32, nv), vals: make([]float64, nv)}
					for i := range nv {
						v.users[i] = uint32(r.Uvarint())
						v.vals[i] = r.Float()
					}
					c.sums[k] = v
				}
			}
			if r.Err != nil {
				return r.Err
			}
			cells[d] = c
		}
		ix.cells = append(ix.cells, cells)
	}
	nu := r.Len(3)
	size := 0
	if nu > 0 {
		size = max(1024, nu)
	}
	ix.tl, ix.firstDay = make([]timeline, size), make([]Day, size)
	for u := range size {
		ix.firstDay[u] = noDay
	}
	for u := range nu {
		ix.tl[u] = timeline{data: r.Bytes(), last: r.Varint()}
		ix.firstDay[u] = Day(r.Varint())
	}
	nt := r.Len(2)
	ix.tails = make(map[uint32][]entry, nt)
	for range nt {
		u := uint32(r.Uvarint())
		k := r.Len(2)
		tail := make([]entry, k)
		for i := range tail {
			tail[i] = entry{t: r.Varint(), ev: uint32(r.Uvarint())}
		}
		if r.Err == nil && int(u) >= size {
			return fmt.Errorf("tail of user %d beyond the %d timelines", u, size)
		}
		ix.tails[u] = tail
	}
	nn := r.Len(2)
	ix.newUsers = make(map[Day]uint64, nn)
	for range nn {
		d := Day(r.Varint())
		ix.newUsers[d] = r.Uvarint()
	}
	ix.queue = nil
	return r.Done()
}
