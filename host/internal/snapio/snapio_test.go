package snapio

import (
	"bytes"
	"math/rand/v2"
	"slices"
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

// TestBitmapCheckAcceptsEveryKindAndSurvivesDamage: bitmaps with array,
// bitmap and run containers (the writer run-optimizes) read back equal;
// damaged copies of them read back as an error or as a bitmap that can be
// iterated, never a panic.
func TestBitmapCheckAcceptsEveryKindAndSurvivesDamage(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		bm := roaring.New()
		for range rng.IntN(5) + 1 {
			base := uint32(rng.IntN(1 << 20))
			switch rng.IntN(3) {
			case 0: // sparse: an array container
				for range rng.IntN(100) + 1 {
					bm.Add(base + uint32(rng.IntN(60000)))
				}
			case 1: // dense: a bitmap container
				for range 10000 {
					bm.Add(base + uint32(rng.IntN(65536)))
				}
			default: // ranges: run containers
				for range rng.IntN(20) + 1 {
					lo := base + uint32(rng.IntN(60000))
					bm.AddRange(uint64(lo), uint64(lo)+uint64(rng.IntN(3000))+1)
				}
			}
		}
		w := &Writer{}
		w.Bitmap(bm)
		r := NewReader(w.Buf)
		if got := r.Bitmap(); r.Err != nil || !got.Equals(bm) {
			t.Fatalf("round %d: read back %v (err %v), want %d values", round, got.GetCardinality(), r.Err, bm.GetCardinality())
		}
		for i := range 40 {
			bad := bytes.Clone(w.Buf)
			bad[rng.IntN(len(bad))] ^= byte(1 + i%255)
			got := NewReader(bad).Bitmap()
			it := got.Iterator()
			for it.HasNext() {
				it.Next()
			}
			_ = got.GetCardinality()
		}
	}
}

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

// TestStrings reads back strings written one by one, and fails on a
// truncation as String does.
func TestStrings(t *testing.T) {
	t.Parallel()
	in := []string{"a", "", "user-0000001", "ü"}
	w := &Writer{}
	for _, s := range in {
		w.String(s)
	}
	w.Byte(7)
	r := NewReader(w.Buf)
	got := r.Strings(len(in))
	if r.Err != nil || !slices.Equal(got, in) || r.Byte() != 7 {
		t.Fatalf("Strings = %q (err %v), want %q then the next byte", got, r.Err, in)
	}
	r = NewReader(w.Buf[:len(w.Buf)-3])
	if r.Strings(len(in)); r.Err == nil {
		t.Fatal("a truncated string read without an error")
	}
}
