package engine

// chunkBits sizes the chunks of a chunked array: 1024 entries, so that
// the first write after a capture copies 4 KiB of a since array (24 KiB
// of profiles), not the whole array.
const (
	chunkBits = 10
	chunkLen  = 1 << chunkBits
)

// chunked is an array indexed by dense user id, kept in fixed-size chunks
// so that a snapshot can share it in its pause (share copies the chunk
// pointers only) and the writer copies a chunk before its first write
// after that (copy-on-write), until the capture is released. Writer only,
// except frozen arrays, which never change.
type chunked[T any] struct {
	chunks [][]T
	// shared[i] is set while chunk i is held by a capture: it is copied
	// before it is written.
	shared []bool
}

// frozenChunks is a chunked array as of a share: read-only.
type frozenChunks[T any] [][]T

func (f frozenChunks[T]) get(i uint32) T {
	if c := int(i >> chunkBits); c < len(f) {
		return f[c][i&(chunkLen-1)]
	}
	var zero T
	return zero
}

func (c *chunked[T]) get(i uint32) T { return frozenChunks[T](c.chunks).get(i) }

// set stores v at i, growing the array and copying a shared chunk first.
func (c *chunked[T]) set(i uint32, v T) {
	k := int(i >> chunkBits)
	for k >= len(c.chunks) {
		c.chunks = append(c.chunks, make([]T, chunkLen))
		c.shared = append(c.shared, false)
	}
	if c.shared[k] {
		c.chunks[k] = append(make([]T, 0, chunkLen), c.chunks[k]...)
		c.shared[k] = false
	}
	c.chunks[k][i&(chunkLen-1)] = v
}

// share returns the array as it is now, which stays so: the writer copies
// a chunk before changing it, until unshare.
func (c *chunked[T]) share() frozenChunks[T] {
	for i := range c.shared {
		c.shared[i] = true
	}
	return frozenChunks[T](append([][]T(nil), c.chunks...))
}

// unshare ends copy-on-write once the capture is done with the array.
func (c *chunked[T]) unshare() { clear(c.shared) }
