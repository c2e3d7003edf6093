package snapio

import (
	"bytes"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// TestBitmapRejectsBrokenInvariants: bytes that decode to a bitmap whose
// containers break roaring's invariants (here an array container out of
// order) are an error, not a bitmap that misbehaves or panics later.
func TestBitmapRejectsBrokenInvariants(t *testing.T) {
	t.Parallel()
	w := &Writer{}
	w.Bitmap(roaring.BitmapOf(1, 2, 3))
	good := bytes.Clone(w.Buf)
	if bm := NewReader(good).Bitmap(); bm.GetCardinality() != 3 {
		t.Fatalf("round trip: %v", bm)
	}
	bad := bytes.Clone(good)
	i := bytes.LastIndex(bad, []byte{1, 0, 2, 0, 3, 0})
	if i < 0 {
		t.Fatal("array container not found in the encoding")
	}
	copy(bad[i:], []byte{3, 0, 2, 0, 1, 0})
	r := NewReader(bad)
	bm := r.Bitmap()
	if r.Err == nil {
		t.Fatalf("an array container out of order decoded to %v without an error", bm.ToArray())
	}
	if !bm.IsEmpty() {
		t.Fatalf("a failed read returned %v, want an empty bitmap", bm.ToArray())
	}
}
