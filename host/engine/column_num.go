package engine

import (
	"maps"
	"math"
	"slices"

	"github.com/segd/segd/rules"
)

// numColumn is a time bucket's number per user (a sum, a minimum or a
// maximum): a sorted part, users and numbers in two arrays (12 bytes a
// user, no per-user object for the collector to scan), and a map of the
// users added since it was last merged, kept to an eighth of it so that
// merging costs O(1) amortized per user. Most users of a bucket arrive
// while it is the current one, and the older buckets a window reads are
// all sorted part.
type numColumn struct {
	keys   []uint32 // ascending; never changed in place (merge makes new arrays), so clones share it
	nums   []float64
	recent map[uint32]float64
}

// get returns u's number.
func (c *numColumn) get(u uint32) (float64, bool) {
	if v, ok := c.recent[u]; ok {
		return v, true
	}
	if i, ok := slices.BinarySearch(c.keys, u); ok {
		return c.nums[i], true
	}
	return 0, false
}

// getFrom is get for users asked in ascending order: *from is where the
// last one was found in the sorted part, and the search starts there.
func (c *numColumn) getFrom(u uint32, from *int) (float64, bool) {
	if len(c.recent) > 0 {
		if v, ok := c.recent[u]; ok {
			return v, true
		}
	}
	i, ok := slices.BinarySearch(c.keys[*from:], u)
	*from += i
	if !ok {
		return 0, false
	}
	return c.nums[*from], true
}

// add folds v into u's number with the aggregate: sum (and avg) add, min
// and max keep the extreme. fresh says that u has no number yet (the
// bucket's bitmap knows), which spares the lookups.
func (c *numColumn) add(u uint32, v float64, f rules.AggFunc, fresh bool) {
	fold := func(x float64) float64 {
		switch f {
		case rules.AggMin:
			return math.Min(x, v)
		case rules.AggMax:
			return math.Max(x, v)
		}
		return x + v
	}
	if !fresh {
		if x, ok := c.recent[u]; ok {
			c.recent[u] = fold(x)
			return
		}
		if i, ok := slices.BinarySearch(c.keys, u); ok {
			c.nums[i] = fold(c.nums[i])
			return
		}
	}
	if c.recent == nil {
		c.recent = map[uint32]float64{}
	}
	if f == rules.AggSum || f == rules.AggAvg {
		v = 0 + v // a sum starts at 0: -0 sums to 0, as it does from an empty sum
	}
	c.recent[u] = v
	if len(c.recent) >= max(256, len(c.keys)/8) {
		c.merge()
	}
}

// merge moves the recent users into the sorted part.
func (c *numColumn) merge() {
	if len(c.recent) == 0 {
		return
	}
	add := slices.Sorted(maps.Keys(c.recent))
	keys := make([]uint32, 0, len(c.keys)+len(add))
	nums := make([]float64, 0, len(c.keys)+len(add))
	i := 0
	for _, u := range add {
		for i < len(c.keys) && c.keys[i] < u {
			keys, nums = append(keys, c.keys[i]), append(nums, c.nums[i])
			i++
		}
		keys, nums = append(keys, u), append(nums, c.recent[u])
	}
	keys, nums = append(keys, c.keys[i:]...), append(nums, c.nums[i:]...)
	c.keys, c.nums = keys, nums
	clear(c.recent) // kept with its room: the bucket likely grows on
}

// clone copies what the writer may change in place: the numbers and the
// recent map (the keys are never changed in place).
func (c *numColumn) clone() *numColumn {
	return &numColumn{keys: c.keys, nums: slices.Clone(c.nums), recent: maps.Clone(c.recent)}
}

// each calls f for the users in ascending order.
func (c *numColumn) each(f func(u uint32, x float64)) {
	add := slices.Sorted(maps.Keys(c.recent))
	i := 0
	for _, u := range add {
		for i < len(c.keys) && c.keys[i] < u {
			f(c.keys[i], c.nums[i])
			i++
		}
		f(u, c.recent[u])
	}
	for ; i < len(c.keys); i++ {
		f(c.keys[i], c.nums[i])
	}
}

// len is the number of users.
func (c *numColumn) len() int { return len(c.keys) + len(c.recent) }
