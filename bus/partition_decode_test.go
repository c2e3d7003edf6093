package bus

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// mixedBatch is a batch of n items for random users, some of them invalid
// in the ways that decide which partition counts them.
func mixedBatch(rng *rand.Rand, n int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		u := fmt.Sprintf("u%d", rng.IntN(5000))
		switch rng.IntN(12) {
		case 0:
			fmt.Fprintf(&sb, `{"user":%q,"profile":{"plan":"pro","age":%d}}`, u, rng.IntN(90))
		case 1:
			fmt.Fprintf(&sb, `{"user":%q,"event":""}`, u) // invalid, with a user
		case 2:
			sb.WriteString(`{"event":"view","time":1}`) // invalid, no user
		case 3:
			fmt.Fprintf(&sb, `{"user":%q,"event":"view","time":"not a time"}`, u)
		default:
			fmt.Fprintf(&sb, `{"user":%q,"event":"view","time":%d,"props":{"amount":%d,"tag":"t%d"}}`, u, 1_700_000_000_000+rng.IntN(1e6), rng.IntN(100), rng.IntN(5))
		}
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// TestDecodePartitionMessageKeepsWhatKeepPartitionKeeps checks the cheap
// route of a mixed batch against decoding it whole and reducing it: each
// partition gets the same events and profiles, and across partitions every
// invalid item is counted once.
func TestDecodePartitionMessageKeepsWhatKeepPartitionKeeps(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	const of = 4
	for round := range 200 {
		data := mixedBatch(rng, 1+rng.IntN(300))
		if round%50 == 0 {
			data = []byte("not a batch")
		}
		var invalidWhole, invalidCheap int
		var errs int
		for n := range of {
			whole := DecodeMessage(7, "segd.events.shop", data, 5)
			KeepPartition(whole, n, of)
			cheap := DecodePartitionMessage(7, "segd.events.shop", data, 5, n, of)
			if (whole.Err == nil) != (cheap.Err == nil) {
				t.Fatalf("round %d partition %d: err %v vs %v", round, n, whole.Err, cheap.Err)
			}
			if cheap.Err != nil {
				errs++
			}
			if !reflect.DeepEqual(whole.Batch.Events, cheap.Batch.Events) && (len(whole.Batch.Events)+len(cheap.Batch.Events) > 0) {
				t.Fatalf("round %d partition %d: events differ:\n%v\n%v", round, n, whole.Batch.Events, cheap.Batch.Events)
			}
			if !reflect.DeepEqual(whole.Batch.Profiles, cheap.Batch.Profiles) && (len(whole.Batch.Profiles)+len(cheap.Batch.Profiles) > 0) {
				t.Fatalf("round %d partition %d: profiles differ", round, n)
			}
			invalidWhole += whole.Batch.Invalid
			invalidCheap += cheap.Batch.Invalid
			if cheap.Batch.Invalid > 0 && cheap.Batch.FirstInvalid == "" {
				t.Fatalf("round %d partition %d: %d invalid without a description", round, n, cheap.Batch.Invalid)
			}
		}
		if invalidWhole != invalidCheap {
			t.Fatalf("round %d: invalid items counted %d times by the cheap route, %d by the whole", round, invalidCheap, invalidWhole)
		}
		if string(data) == "not a batch" && errs != 1 {
			t.Fatalf("a message that is no batch was reported by %d partitions, want 1", errs)
		}
	}
}

// BenchmarkMixedBatchPartitions is the decode cost of one mixed message of
// 1000 realistic items for 4 partitions: each decoding it whole and reducing it
// (KeepPartition), or each skipping the others' items (Keep), beside one
// plain decode (the baseline, x-decode).
func BenchmarkMixedBatchPartitions(b *testing.B) {
	data := realisticBatch(1000, 1)
	const of = 4
	var base float64
	b.Run("one-decode", func(b *testing.B) {
		for b.Loop() {
			DecodeMessage(1, "segd.events.shop", data, 5)
		}
		base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, route := range []string{"whole-then-reduce", "keep"} {
		b.Run(route, func(b *testing.B) {
			for b.Loop() {
				for n := range of {
					if route == "keep" {
						DecodePartitionMessage(1, "segd.events.shop", data, 5, n, of)
					} else {
						KeepPartition(DecodeMessage(1, "segd.events.shop", data, 5), n, of)
					}
				}
			}
			if base > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-decode")
			}
		})
	}
}
