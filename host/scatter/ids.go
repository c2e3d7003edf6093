package scatter

// Global ids (docs/operations.md, "Partitions: how answers are merged").
// A partition's local dense ids are cut into blocks of 2^16; local block b
// of partition p is global block b·P + p. So a global id names its
// partition and its local id without a table, the ids of one partition keep
// their order, the blocks of the partitions interleave (global ids stay
// about as dense as the local ones), and with P = 1 a global id is the
// local id.

// MaxPartitions is the most partitions a stream may have (PARTITIONS.md:
// the documented limit of --partitions).
const MaxPartitions = 256

const blockBits = 16

// GlobalID returns the global id of local id l of partition p of n. l must
// be below MaxUsers(n): past it the global block would overflow 32 bits.
func GlobalID(l uint32, p, n int) uint32 {
	b := uint64(l>>blockBits)*uint64(n) + uint64(p)
	return uint32(b<<blockBits) | l&(1<<blockBits-1)
}

// Split returns the local id and the partition of global id g (of n
// partitions): the inverse of GlobalID.
func Split(g uint32, n int) (l uint32, p int) {
	b := g >> blockBits
	return (b/uint32(n))<<blockBits | g&(1<<blockBits-1), int(b % uint32(n))
}

// MaxUsers is how many users each of n partitions can hold with a global
// id: local ids 0..MaxUsers(n)-1 (2^32 for n = 1, about 2^32/n beyond).
func MaxUsers(n int) uint64 { return uint64((1<<blockBits)/n) << blockBits }

// firstLocal returns the smallest local id of partition p (of n) whose
// global id is at least g, and false when there is none below MaxUsers(n):
// where a page walk that has reached global id g resumes in partition p.
func firstLocal(g uint32, p, n int) (uint32, bool) {
	b := g >> blockBits
	lb, q := uint64(b/uint32(n)), int(b%uint32(n))
	var l uint64
	switch {
	case p == q:
		l = lb<<blockBits | uint64(g&(1<<blockBits-1))
	case p > q:
		l = lb << blockBits
	default:
		l = (lb + 1) << blockBits
	}
	if l >= MaxUsers(n) {
		return 0, false
	}
	return uint32(l), true
}
