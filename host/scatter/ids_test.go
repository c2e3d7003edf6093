package scatter

import (
	"math/rand/v2"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// partitionCounts are the P the id tests try: 1, powers of two, numbers
// that do not divide 2^16, and the limit.
var partitionCounts = []int{1, 2, 3, 4, 7, 12, 100, 255, MaxPartitions}

// randomLocal returns a local id of one of n partitions, often at the
// edges of a block or of the id space.
func randomLocal(rng *rand.Rand, n int) uint32 {
	max := MaxUsers(n)
	switch rng.IntN(4) {
	case 0:
		return uint32(rng.Uint64N(max))
	case 1:
		return uint32(max - 1 - rng.Uint64N(3))
	case 2:
		b := rng.Uint64N(max >> blockBits)
		return uint32(b<<blockBits + []uint64{0, 1, 1<<blockBits - 1}[rng.IntN(3)])
	}
	return uint32(rng.IntN(3 << blockBits))
}

func TestGlobalIDsAreABijectionThatKeepsOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range partitionCounts {
		if got := MaxUsers(n) * uint64(n); got > 1<<32 || got < 1<<32-uint64(n)<<blockBits {
			t.Errorf("P=%d: %d partitions of %d users hold %d ids, want about 2^32 and at most", n, n, MaxUsers(n), got)
		}
		seen := map[uint32][2]uint64{}
		for range 20000 {
			l, p := randomLocal(rng, n), rng.IntN(n)
			g := GlobalID(l, p, n)
			if l2, p2 := Split(g, n); l2 != l || p2 != p {
				t.Fatalf("P=%d: Split(GlobalID(%d, %d)) = %d, %d", n, l, p, l2, p2)
			}
			if was, ok := seen[g]; ok && (was[0] != uint64(l) || was[1] != uint64(p)) {
				t.Fatalf("P=%d: global %d is both local %d of %d and local %d of %d", n, g, was[0], was[1], l, p)
			}
			seen[g] = [2]uint64{uint64(l), uint64(p)}
			// Ordering within a partition.
			l2 := randomLocal(rng, n)
			if (l < l2) != (g < GlobalID(l2, p, n)) {
				t.Fatalf("P=%d partition %d: locals %d < %d is %v, globals %d < %d is %v",
					n, p, l, l2, l < l2, g, GlobalID(l2, p, n), g < GlobalID(l2, p, n))
			}
			if n == 1 && g != l {
				t.Fatalf("P=1: GlobalID(%d) = %d, want the local id", l, g)
			}
		}
		// Every global id whose local id is in range comes back.
		for range 20000 {
			g := rng.Uint32()
			l, p := Split(g, n)
			if p < 0 || p >= n {
				t.Fatalf("P=%d: Split(%d) partition %d", n, g, p)
			}
			if uint64(l) < MaxUsers(n) && GlobalID(l, p, n) != g {
				t.Fatalf("P=%d: GlobalID(Split(%d)) = %d", n, g, GlobalID(l, p, n))
			}
		}
	}
}

// TestFirstLocalIsWhereAPageWalkResumes holds firstLocal to its
// definition: the smallest local id of the partition whose global id is at
// least g.
func TestFirstLocalIsWhereAPageWalkResumes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range partitionCounts {
		for range 20000 {
			g, p := rng.Uint32(), rng.IntN(n)
			if rng.IntN(2) == 0 {
				g = GlobalID(randomLocal(rng, n), rng.IntN(n), n) + uint32(rng.IntN(3)) - 1
			}
			l, ok := firstLocal(g, p, n)
			last := uint32(MaxUsers(n) - 1)
			if !ok {
				if GlobalID(last, p, n) >= g {
					t.Fatalf("P=%d partition %d from %d: none, but local %d is global %d", n, p, g, last, GlobalID(last, p, n))
				}
				continue
			}
			if GlobalID(l, p, n) < g {
				t.Fatalf("P=%d partition %d from %d: local %d is global %d, below", n, p, g, l, GlobalID(l, p, n))
			}
			if l > 0 && GlobalID(l-1, p, n) >= g {
				t.Fatalf("P=%d partition %d from %d: local %d, but %d is global %d, not below", n, p, g, l, l-1, GlobalID(l-1, p, n))
			}
		}
	}
}

// TestToGlobalMovesEveryID holds toGlobal (block by block) to GlobalID
// applied to each id.
func TestToGlobalMovesEveryID(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range partitionCounts {
		for range 20 {
			p := rng.IntN(n)
			bm := roaring.New()
			want := roaring.New()
			for range rng.IntN(3000) {
				l := randomLocal(rng, n)
				if rng.IntN(2) == 0 { // dense runs too
					l &^= 0xFF
				}
				bm.Add(l)
				want.Add(GlobalID(l, p, n))
			}
			if rng.IntN(4) == 0 {
				start := uint64(randomLocal(rng, n)) &^ 0xFFFF
				end := min(start+1<<blockBits+uint64(rng.IntN(1000)), MaxUsers(n))
				bm.AddRange(start, end)
				for l := start; l < end; l++ {
					want.Add(GlobalID(uint32(l), p, n))
				}
			}
			if got := toGlobal(bm.Clone(), p, n); !got.Equals(want) {
				t.Fatalf("P=%d partition %d: toGlobal of %d ids gave %d, want %d", n, p, bm.GetCardinality(), got.GetCardinality(), want.GetCardinality())
			}
		}
	}
}
