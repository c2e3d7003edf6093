package ingest_test

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/segd/segd/ingest"
)

func TestPartitionIsFNV1a32(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, 12)
	for i := range 100_000 {
		user := fmt.Sprintf("u%d-%x", i, rng.Uint64())
		h := fnv.New32a()
		h.Write([]byte(user))
		want := int(h.Sum32() % 12)
		got := ingest.Partition(user, 12)
		if got != want {
			t.Fatalf("Partition(%q, 12) = %d, want %d", user, got, want)
		}
		counts[got]++
	}
	for p, n := range counts {
		if n < 100_000/12*9/10 {
			t.Errorf("partition %d has %d of 100000 users: the hash spreads badly", p, n)
		}
	}
	if got := ingest.Partition("anyone", 1); got != 0 {
		t.Errorf("Partition(_, 1) = %d", got)
	}
	if got := ingest.Partition("anyone", 0); got != 0 {
		t.Errorf("Partition(_, 0) = %d", got)
	}
}

func ExamplePartition() {
	fmt.Println(ingest.Partition("u42", 4), ingest.Partition("u42", 1))
	// Output: 2 0
}
