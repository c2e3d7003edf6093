package snapio

import (
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// TestDamagedBitmap: a bitmap that Reader.Bitmap returns without an error
// is usable (damage that the roaring decoder accepts used to panic later,
// in Maximum, when a snapshot was restored).
func TestDamagedBitmap(t *testing.T) {
	t.Parallel()
	bm := roaring.BitmapOf(1, 2, 3, 70000, 1<<20)
	for i := range 500 {
		bm.Add(uint32(200000 + 3*i)) // an array container
	}
	for i := range 4500 {
		bm.Add(uint32(400000 + 2*i)) // a bitmap container
	}
	bm.AddRange(600000, 610000) // runs
	var w Writer
	w.Bitmap(bm)
	good := w.Buf
	for i := range min(len(good), 48) { // the header: keys, cardinalities, offsets
		for flip := byte(1); flip != 0; flip++ {
			bad := append([]byte(nil), good...)
			bad[i] ^= flip
			r := NewReader(bad)
			got := r.Bitmap()
			if r.Err != nil {
				continue
			}
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("byte %d ^ %#x: decoded without an error, then: %v", i, flip, p)
					}
				}()
				if !got.IsEmpty() {
					_ = got.Maximum()
					_ = got.Minimum()
				}
				_ = got.GetCardinality()
				it := got.Iterator()
				for it.HasNext() {
					it.Next()
				}
				_ = got.Contains(70000)
			}()
		}
	}
}
