package api

import "fmt"

// Partitions (docs/operations.md, "Partitions"): users are split into P
// partitions by ingest.Partition (FNV-1a-32 of the user id mod P); a partition-aware producer publishes
// partition N's items on PartitionSubject(N).
const (
	// PartitionSubjectPrefix starts every partition's subjects:
	// segd.part.<N>.events.
	PartitionSubjectPrefix = "segd.part."
	// MaxPartitions bounds segd serve --partitions.
	MaxPartitions = 256
	// StreamPartitionsKey is the events stream's metadata key that records
	// its number of partitions, fixed at its first start.
	StreamPartitionsKey = "segd_partitions"
)

// PartitionSubject is the subject partition n's batches are published on
// by a partition-aware producer: segd.part.<n>.events.
func PartitionSubject(n int) string {
	return fmt.Sprintf("%s%d.events", PartitionSubjectPrefix, n)
}

// Partition is the partition of user among n: FNV-1a-32 of the id mod n
// (0 when n < 2), the hash of NATS subject mapping's partition(). It is
// ingest.Partition, repeated here so that producers (package bus/client)
// need not link the engine's packages; a test keeps the two equal.
func Partition(user string, n int) int {
	if n < 2 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
