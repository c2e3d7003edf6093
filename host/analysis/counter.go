package analysis

import (
	"github.com/RoaringBitmap/roaring/v2"
)

// counter is a bit-sliced index of small non-negative counts per user:
// plane i holds the users whose count has bit i set. Users with a count of
// zero are in no plane; the presence bitmap beside it is the existence
// bitmap. It is written by one goroutine and read under the index's lock.
type counter struct {
	planes []*roaring.Bitmap
}

// increment adds one to user u's count: a ripple carry that touches two
// planes on average (each plane it clears is a carry into the next).
func (c *counter) increment(u uint32) {
	for i := 0; ; i++ {
		if i == len(c.planes) {
			c.planes = append(c.planes, roaring.New())
		}
		if !c.planes[i].CheckedRemove(u) {
			c.planes[i].Add(u)
			return
		}
	}
}

// sum returns the sum of the counts of the users in set: one AND
// cardinality per plane.
func (c *counter) sum(set *roaring.Bitmap) uint64 {
	var s uint64
	for i, p := range c.planes {
		s += p.AndCardinality(set) << i
	}
	return s
}

// atLeast returns the users among exists whose count is at least n,
// comparing plane by plane from the most significant one (O'Neil and
// Quass's range algorithm): the users known to be greater so far, and the
// users still equal to n's leading bits.
func (c *counter) atLeast(exists *roaring.Bitmap, n uint64) *roaring.Bitmap {
	if n == 0 {
		return exists.Clone()
	}
	if len(c.planes) < 64 && n>>len(c.planes) != 0 {
		return roaring.New() // n needs more bits than any count has
	}
	gt := roaring.New()
	eq := exists.Clone()
	for i := len(c.planes) - 1; i >= 0; i-- {
		p := c.planes[i]
		if n&(1<<i) != 0 {
			eq.And(p)
		} else {
			gt.Or(roaring.And(eq, p))
			eq.AndNot(p)
		}
	}
	gt.Or(eq)
	return gt
}

// size is the memory of the planes in bytes.
func (c *counter) size() uint64 {
	var n uint64
	for _, p := range c.planes {
		n += p.GetSizeInBytes()
	}
	return n
}
