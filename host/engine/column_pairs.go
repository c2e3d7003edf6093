package engine

import (
	"maps"
	"slices"
	"sort"
)

// pairColumn is a time bucket's distinct values per user (interned ids):
// a sorted part, one uint64 per (user, value) pair (user in the high
// half), and the pairs added since it was last merged, by user, kept to
// an eighth of it.
type pairColumn struct {
	pairs  []uint64 // ascending; never changed in place, so clones share it
	recent map[uint32][]uint32
	n      int // pairs in recent
}

func pairOf(u, v uint32) uint64 { return uint64(u)<<32 | uint64(v) }

// add records value v for user u (once).
func (c *pairColumn) add(u, v uint32) {
	if _, ok := slices.BinarySearch(c.pairs, pairOf(u, v)); ok {
		return
	}
	if slices.Contains(c.recent[u], v) {
		return
	}
	if c.recent == nil {
		c.recent = map[uint32][]uint32{}
	}
	c.recent[u] = append(c.recent[u], v)
	c.n++
	if c.n >= max(256, len(c.pairs)/8) {
		c.merge()
	}
}

// settle merges the recent pairs (see numColumn.settle).
func (c *pairColumn) settle() {
	if c.n > 0 {
		c.merge()
	}
}

func (c *pairColumn) merge() {
	add := make([]uint64, 0, c.n)
	for u, vs := range c.recent {
		for _, v := range vs {
			add = append(add, pairOf(u, v))
		}
	}
	slices.Sort(add)
	pairs := make([]uint64, 0, len(c.pairs)+len(add))
	i := 0
	for _, p := range add {
		for i < len(c.pairs) && c.pairs[i] < p {
			pairs = append(pairs, c.pairs[i])
			i++
		}
		pairs = append(pairs, p)
	}
	c.pairs = append(pairs, c.pairs[i:]...)
	c.recent, c.n = nil, 0
}

// values appends user u's values to out.
func (c *pairColumn) values(u uint32, out []uint32) []uint32 {
	i := sort.Search(len(c.pairs), func(i int) bool { return c.pairs[i] >= uint64(u)<<32 })
	for ; i < len(c.pairs) && uint32(c.pairs[i]>>32) == u; i++ {
		out = append(out, uint32(c.pairs[i]))
	}
	return append(out, c.recent[u]...)
}

// clone copies the recent pairs (the sorted part is never changed in
// place).
func (c *pairColumn) clone() *pairColumn {
	n := &pairColumn{pairs: c.pairs, n: c.n}
	if c.recent != nil {
		n.recent = make(map[uint32][]uint32, len(c.recent))
		for u, vs := range c.recent {
			n.recent[u] = slices.Clone(vs)
		}
	}
	return n
}

// all returns every pair in ascending order.
func (c *pairColumn) all() []uint64 {
	if len(c.recent) == 0 {
		return c.pairs
	}
	m := &pairColumn{pairs: c.pairs, recent: maps.Clone(c.recent), n: c.n}
	m.merge()
	return m.pairs
}
