package engine

import (
	"maps"
	"math"
	"slices"

	"github.com/segd/segd/rules"
)

// numColumn is a time bucket's number per user (a sum, a minimum or a
// maximum): a sorted part, users and numbers in two arrays (8 bytes a
// user while the numbers are whole and fit an int32, 12 otherwise; no
// per-user object for the collector to scan), and a map of the
// users added since it was last merged, kept to an eighth of it so that
// merging costs O(1) amortized per user. Most users of a bucket arrive
// while it is the current one, and the older buckets a window reads are
// all sorted part.
type numColumn struct {
	keys []uint32 // ascending; never changed in place (merge makes new arrays), so clones share it
	// The numbers of the sorted part: in ints (4 bytes) while every one
	// is a whole number that an int32 holds exactly, as counts and
	// amounts in cents mostly are; in nums (8 bytes) once one is not.
	ints   []int32
	nums   []float64
	wide   bool // nums holds the numbers
	recent map[uint32]float64
}

// narrow reports whether an int32 holds x exactly (not -0, whose sign
// an int32 would lose).
func narrow(x float64) bool {
	return x == math.Trunc(x) && x >= math.MinInt32 && x <= math.MaxInt32 && !(x == 0 && math.Signbit(x))
}

// at is the i-th number of the sorted part.
func (c *numColumn) at(i int) float64 {
	if c.wide {
		return c.nums[i]
	}
	return float64(c.ints[i])
}

// setAt sets the i-th number of the sorted part, widening the column if
// an int32 does not hold x.
func (c *numColumn) setAt(i int, x float64) {
	if !c.wide {
		if narrow(x) {
			c.ints[i] = int32(x)
			return
		}
		c.widen()
	}
	c.nums[i] = x
}

func (c *numColumn) widen() {
	c.nums = make([]float64, len(c.ints))
	for i, x := range c.ints {
		c.nums[i] = float64(x)
	}
	c.ints, c.wide = nil, true
}

// narrowAll keeps the numbers in ints if every one fits (after nums was
// filled, as a snapshot read does).
func (c *numColumn) narrowAll() {
	ints := make([]int32, len(c.nums))
	for i, x := range c.nums {
		if !narrow(x) {
			c.wide = true
			return
		}
		ints[i] = int32(x)
	}
	c.ints, c.nums, c.wide = ints, nil, false
}

// get returns u's number.
func (c *numColumn) get(u uint32) (float64, bool) {
	if v, ok := c.recent[u]; ok {
		return v, true
	}
	if i, ok := slices.BinarySearch(c.keys, u); ok {
		return c.at(i), true
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
	return c.at(*from), true
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
			c.setAt(i, fold(c.at(i)))
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
	wide := c.wide
	for _, u := range add {
		wide = wide || !narrow(c.recent[u])
	}
	if wide && !c.wide {
		c.widen()
	}
	keys := make([]uint32, 0, len(c.keys)+len(add))
	if wide {
		c.nums = mergeNums(c.keys, c.nums, add, c.recent, &keys, func(x float64) float64 { return x })
	} else {
		c.ints = mergeNums(c.keys, c.ints, add, c.recent, &keys, func(x float64) int32 { return int32(x) })
	}
	c.keys = keys
	clear(c.recent) // kept with its room: the bucket likely grows on
}

// mergeNums merges the sorted part (keys, nums) with the users add (sorted)
// of recent, appending the users to *out and returning the numbers.
func mergeNums[T int32 | float64](keys []uint32, nums []T, add []uint32, recent map[uint32]float64, out *[]uint32, conv func(float64) T) []T {
	merged := make([]T, 0, len(keys)+len(add))
	k := *out
	i := 0
	for _, u := range add {
		for i < len(keys) && keys[i] < u {
			k, merged = append(k, keys[i]), append(merged, nums[i])
			i++
		}
		k, merged = append(k, u), append(merged, conv(recent[u]))
	}
	*out = append(k, keys[i:]...)
	return append(merged, nums[i:]...)
}

// settle merges the recent users and drops the map with its room: the
// bucket is no longer the newest, so few users arrive in it any more, and
// a map entry costs about three times a sorted one (BenchmarkRuleState100).
func (c *numColumn) settle() {
	c.merge()
	c.recent = nil
}

// clone copies what the writer may change in place: the numbers and the
// recent map (the keys are never changed in place).
func (c *numColumn) clone() *numColumn {
	return &numColumn{keys: c.keys, ints: slices.Clone(c.ints), nums: slices.Clone(c.nums), wide: c.wide, recent: maps.Clone(c.recent)}
}

// each calls f for the users in ascending order.
func (c *numColumn) each(f func(u uint32, x float64)) {
	add := slices.Sorted(maps.Keys(c.recent))
	i := 0
	for _, u := range add {
		for i < len(c.keys) && c.keys[i] < u {
			f(c.keys[i], c.at(i))
			i++
		}
		f(u, c.recent[u])
	}
	for ; i < len(c.keys); i++ {
		f(c.keys[i], c.at(i))
	}
}

// len is the number of users.
func (c *numColumn) len() int { return len(c.keys) + len(c.recent) }
