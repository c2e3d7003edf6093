package ingest

// Partition returns the partition of a user among n: FNV-1a-32 of the
// user id, mod n, the hash NATS subject mapping's partition() uses, so that
// a producer may route with either. n < 2 means one partition, 0.
func Partition(user string, n int) int {
	if n < 2 {
		return 0
	}
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= prime32
	}
	return int(h % uint32(n))
}
