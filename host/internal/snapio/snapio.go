// Package snapio is the byte-level encoding of segd's snapshots: varints,
// strings, float bits, roaring bitmaps and JSON-like values, appended to a
// buffer and read back with a sticky error, so that a decoder can read a
// whole section and check the error once. Every length is checked against
// the bytes left, so that a damaged length cannot allocate gigabytes.
package snapio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
)

// Writer appends encoded values to Buf.
type Writer struct {
	Buf []byte
}

func (w *Writer) Uvarint(v uint64) { w.Buf = binary.AppendUvarint(w.Buf, v) }
func (w *Writer) Varint(v int64)   { w.Buf = binary.AppendVarint(w.Buf, v) }
func (w *Writer) Int(v int)        { w.Varint(int64(v)) }
func (w *Writer) U32(v uint32)     { w.Buf = binary.LittleEndian.AppendUint32(w.Buf, v) }
func (w *Writer) U64(v uint64)     { w.Buf = binary.LittleEndian.AppendUint64(w.Buf, v) }
func (w *Writer) Float(v float64)  { w.U64(math.Float64bits(v)) }
func (w *Writer) Byte(b byte)      { w.Buf = append(w.Buf, b) }

func (w *Writer) Bool(b bool) {
	if b {
		w.Byte(1)
	} else {
		w.Byte(0)
	}
}

func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.Buf = append(w.Buf, s...)
}

func (w *Writer) Bytes(b []byte) {
	w.Uvarint(uint64(len(b)))
	w.Buf = append(w.Buf, b...)
}

// Bitmap writes a roaring bitmap in its portable serialization. It does
// not modify bm.
func (w *Writer) Bitmap(bm *roaring.Bitmap) {
	if bm == nil {
		bm = roaring.New()
	}
	// Run containers shrink the file, but RunOptimize rewrites the bitmap
	// in place, and the bitmaps written here are read meanwhile under read
	// locks (membership and analysis queries): optimize a copy.
	bm = bm.Clone()
	bm.RunOptimize()
	n := bm.GetSerializedSizeInBytes()
	w.Uvarint(n)
	w.Buf = append(w.Buf, make([]byte, n)...)
	out := w.Buf[uint64(len(w.Buf))-n:]
	_, _ = bm.WriteTo(&sliceWriter{out})
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) {
	n := copy(s.b, p)
	s.b = s.b[n:]
	if n < len(p) {
		return n, errors.New("snapio: bitmap larger than its serialized size")
	}
	return n, nil
}

// Begin starts a length-prefixed section and returns its mark for End.
func (w *Writer) Begin() int {
	w.Buf = append(w.Buf, 0, 0, 0, 0, 0, 0, 0, 0)
	return len(w.Buf)
}

// End writes the length of the section begun at mark.
func (w *Writer) End(mark int) {
	binary.LittleEndian.PutUint64(w.Buf[mark-8:mark], uint64(len(w.Buf)-mark))
}

// Value tags.
const (
	tagNil byte = iota
	tagFalse
	tagTrue
	tagFloat
	tagString
	tagList
	tagMap
	tagInt
)

// Any writes a value as decoded from JSON: nil, bool, float64, string,
// []any or map[string]any (ints are kept as ints). Map keys are sorted so
// that equal states encode to equal bytes.
func (w *Writer) Any(v any) error {
	switch x := v.(type) {
	case nil:
		w.Byte(tagNil)
	case bool:
		if x {
			w.Byte(tagTrue)
		} else {
			w.Byte(tagFalse)
		}
	case float64:
		w.Byte(tagFloat)
		w.Float(x)
	case int:
		w.Byte(tagInt)
		w.Varint(int64(x))
	case int64:
		w.Byte(tagInt)
		w.Varint(x)
	case string:
		w.Byte(tagString)
		w.String(x)
	case []any:
		w.Byte(tagList)
		w.Uvarint(uint64(len(x)))
		for _, e := range x {
			if err := w.Any(e); err != nil {
				return err
			}
		}
	case map[string]any:
		w.Byte(tagMap)
		return w.Map(x)
	default:
		return fmt.Errorf("snapio: cannot encode a %T", v)
	}
	return nil
}

// Map writes a map[string]any (nil and empty alike: a length of zero).
func (w *Writer) Map(m map[string]any) error {
	w.Uvarint(uint64(len(m)))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.String(k)
		if err := w.Any(m[k]); err != nil {
			return err
		}
	}
	return nil
}

// Reader reads what a Writer wrote. The first failure sticks in Err and
// every later read returns a zero value.
type Reader struct {
	b   []byte
	Err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Left is the number of unread bytes.
func (r *Reader) Left() int { return len(r.b) }

func (r *Reader) fail(format string, a ...any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("snapio: "+format, a...)
	}
	r.b = nil
}

func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *Reader) Int() int { return int(r.Varint()) }

// Len reads a count of items each at least min bytes long and checks that
// they can fit in what is left.
func (r *Reader) Len(min int) int {
	n := r.Uvarint()
	if min < 1 {
		min = 1
	}
	if n > uint64(len(r.b)/min) {
		r.fail("count %d exceeds the %d bytes left", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *Reader) take(n int) []byte {
	if n > len(r.b) || n < 0 {
		r.fail("want %d bytes, %d left", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *Reader) U32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *Reader) U64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *Reader) Float() float64 { return math.Float64frombits(r.U64()) }

func (r *Reader) Byte() byte {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *Reader) Bool() bool { return r.Byte() == 1 }

func (r *Reader) String() string {
	n := r.Len(1)
	return string(r.take(n))
}

// Strings reads n strings written one after the other by String, into
// one allocation that they share (a million user ids are one object for
// the garbage collector, not a million).
func (r *Reader) Strings(n int) []string {
	out := make([]string, n)
	start, total := r.b, 0
	for range n {
		total += len(r.take(r.Len(1)))
	}
	if r.Err != nil {
		return out
	}
	buf := make([]byte, 0, total)
	ends := make([]int, n)
	r.b = start
	for i := range n {
		buf = append(buf, r.take(r.Len(1))...)
		ends[i] = len(buf)
	}
	all, at := string(buf), 0
	for i, e := range ends {
		out[i], at = all[at:e], e
	}
	return out
}

// Bytes returns a copy of a byte string (nil for an empty one).
func (r *Reader) Bytes() []byte {
	n := r.Len(1)
	b := r.take(n)
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Bitmap reads a bitmap (a copy: it does not share the input).
func (r *Reader) Bitmap() *roaring.Bitmap {
	n := r.Len(1)
	b := r.take(n)
	bm := roaring.New()
	if r.Err != nil {
		return bm
	}
	// Damaged bytes can decode to a bitmap that breaks its invariants
	// (and panics when iterated): check them first. roaring's own
	// Validate is quadratic in a run container's runs.
	if err := checkBitmap(b); err != nil {
		r.fail("bitmap: %v", err)
		return bm
	}
	if err := bm.UnmarshalBinary(b); err != nil {
		r.fail("bitmap: %v", err)
		return roaring.New()
	}
	return bm
}

// Section reads a length-prefixed section written between Begin and End
// and returns a reader of it.
func (r *Reader) Section() *Reader {
	n := r.U64()
	if n > uint64(len(r.b)) {
		r.fail("section of %d bytes, %d left", n, len(r.b))
		return &Reader{Err: r.Err}
	}
	return &Reader{b: r.take(int(n))}
}

// Any reads a value written by Writer.Any.
func (r *Reader) Any() any {
	switch t := r.Byte(); t {
	case tagNil:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagFloat:
		return r.Float()
	case tagInt:
		return int(r.Varint())
	case tagString:
		return r.String()
	case tagList:
		n := r.Len(1)
		out := make([]any, n)
		for i := range out {
			out[i] = r.Any()
		}
		return out
	case tagMap:
		return r.Map()
	default:
		r.fail("unknown value tag %d", t)
		return nil
	}
}

// Map reads a map written by Writer.Map; an empty one reads as an empty
// non-nil map.
func (r *Reader) Map() map[string]any {
	n := r.Len(2)
	m := make(map[string]any, n)
	for range n {
		k := r.String()
		m[k] = r.Any()
		if r.Err != nil {
			return m
		}
	}
	return m
}

// Done checks that the reader consumed everything and reports its error.
func (r *Reader) Done() error {
	if r.Err == nil && len(r.b) != 0 {
		r.fail("%d bytes left over", len(r.b))
	}
	return r.Err
}

// checkBitmap checks, in one pass, that b is a roaring bitmap in the
// portable format whose containers keep roaring's invariants: keys
// ascending, array values ascending, bitmap cardinalities right, runs
// ascending and disjoint within the container, nothing left over.
func checkBitmap(b []byte) error {
	const (
		cookieRuns   = 12347
		cookieNoRuns = 12346
		arrayMax     = 4096
	)
	u16 := func(i int) int { return int(binary.LittleEndian.Uint16(b[i:])) }
	if len(b) < 4 {
		return errors.New("truncated cookie")
	}
	cookie := binary.LittleEndian.Uint32(b)
	pos := 4
	var size int
	var runs []byte
	switch {
	case cookie&0xFFFF == cookieRuns:
		size = int(cookie>>16) + 1
		n := (size + 7) / 8
		if len(b) < pos+n {
			return errors.New("truncated run flags")
		}
		runs, pos = b[pos:pos+n], pos+n
	case cookie == cookieNoRuns:
		if len(b) < 8 {
			return errors.New("truncated size")
		}
		size, pos = int(binary.LittleEndian.Uint32(b[4:])), 8
	default:
		return fmt.Errorf("bad cookie %#x", cookie)
	}
	if size > 1<<16 {
		return fmt.Errorf("%d containers", size)
	}
	header := pos
	if len(b) < header+4*size {
		return errors.New("truncated header")
	}
	pos += 4 * size
	if runs == nil || size >= 4 {
		pos += 4 * size // offsets, not read
	}
	for i := range size {
		key, card := u16(header+4*i), u16(header+4*i+2)+1
		if i > 0 && key <= u16(header+4*(i-1)) {
			return fmt.Errorf("container keys out of order at %d", i)
		}
		switch {
		case runs != nil && runs[i/8]&(1<<(i%8)) != 0:
			if len(b) < pos+2 {
				return errors.New("truncated run container")
			}
			nr := u16(pos)
			pos += 2
			if nr == 0 || len(b) < pos+4*nr {
				return fmt.Errorf("run container %d: %d runs, %d bytes left", i, nr, len(b)-pos)
			}
			end := -1
			for k := range nr {
				start, length := u16(pos+4*k), u16(pos+4*k+2)
				if start <= end || start+length > 0xFFFF {
					return fmt.Errorf("run container %d: run %d [%d, +%d] out of order or range", i, k, start, length)
				}
				end = start + length
			}
			pos += 4 * nr
		case card > arrayMax:
			if len(b) < pos+8192 {
				return errors.New("truncated bitmap container")
			}
			n := 0
			for k := range 1024 {
				n += bits.OnesCount64(binary.LittleEndian.Uint64(b[pos+8*k:]))
			}
			if n != card {
				return fmt.Errorf("bitmap container %d: %d bits set, header says %d", i, n, card)
			}
			pos += 8192
		default:
			if len(b) < pos+2*card {
				return errors.New("truncated array container")
			}
			for k := 1; k < card; k++ {
				if u16(pos+2*k) <= u16(pos+2*k-2) {
					return fmt.Errorf("array container %d: values out of order at %d", i, k)
				}
			}
			pos += 2 * card
		}
	}
	if pos != len(b) {
		return fmt.Errorf("%d bytes past the containers", len(b)-pos)
	}
	return nil
}
