package sdk

import (
	"math"
	"unsafe"
)

// Key is a property (or profile attribute) name resolved once per batch.
// Declare keys once, at package level or in init, and read them with the
// Event and Profile methods that take a Key (NumOf, StrOf, ...) or as whole
// columns with a Batch. Reading through a Key costs an index into the
// column, with no name lookup per item:
//
//	var amount = sdk.Prop("amount")
//	...
//	sdk.HandleEvents(func(e sdk.Event) bool { return e.NumOf(amount) > min })
type Key struct{ id int }

// keyNames holds the names of the registered keys, by Key id.
var keyNames []string

// Prop registers a property name and returns its Key. Registering the same
// name twice returns the same Key. Call it at package level or from init
// (calls during a batch work, but resolve the key for that batch on the spot).
func Prop(name string) Key {
	for id, n := range keyNames {
		if n == name {
			return Key{id}
		}
	}
	keyNames = append(keyNames, name)
	k := Key{len(keyNames) - 1}
	if cur.data != nil {
		cur.resolveKeys()
	}
	return k
}

// Name returns the key's property name.
func (k Key) Name() string { return keyNames[k.id] }

// column is one key's typed views over a batch: t[i] is item i's type tag
// and v[i] its value slot (float64 bits for a Number, a string reference for
// a String or JSON). Both have length n; for a key missing from the batch
// they view shared zeroes (all Absent).
type column struct {
	t []Type
	v []uint64
}

// zeroes backs the columns of keys a batch does not carry.
var zeroes []uint64

// resolveKeys fills b.cols for every registered key.
func (b *batch) resolveKeys() {
	n := b.n
	if len(zeroes) < n {
		zeroes = make([]uint64, max(n, 2*len(zeroes)))
	}
	absent := column{
		t: unsafe.Slice((*Type)(unsafe.Pointer(unsafe.SliceData(zeroes))), n)[:n:n],
		v: zeroes[:n:n],
	}
	b.cols = b.cols[:0]
	for _, name := range keyNames {
		c := absent
		if j := b.findKey(name); j >= 0 {
			base := unsafe.Pointer(unsafe.SliceData(b.data))
			c = column{
				t: unsafe.Slice((*Type)(unsafe.Add(base, b.types+j*n)), n),
				v: unsafe.Slice((*uint64)(unsafe.Add(base, b.values+8*j*n)), n),
			}
		}
		b.cols = append(b.cols, c)
	}
}

// findKey searches the key table for name; -1 if absent.
func (b *batch) findKey(name string) int {
	for j := 0; j < b.k; j++ {
		if b.str(b.keys+8*j) == name {
			return j
		}
	}
	return -1
}

// ref reads a string reference held in a value slot.
func (b *batch) ref(v uint64) string {
	p, l := int(uint32(v)), int(v>>32)
	if l == 0 || p+l > len(b.data) {
		return ""
	}
	return unsafe.String(&b.data[p], l)
}

func (c *column) num(i int) (float64, bool) {
	if uint(i) < uint(len(c.t)) && c.t[i] == Number {
		return math.Float64frombits(c.v[i]), true
	}
	return 0, false
}

func (c *column) typ(i int) Type {
	if uint(i) < uint(len(c.t)) {
		return c.t[i]
	}
	return Absent
}

// TypeOf returns the type of property k, Absent if there is none.
func (e Event) TypeOf(k Key) Type { return e.b.cols[k.id].typ(e.i) }

// HasKey reports whether the event carries property k (even if it is null).
func (e Event) HasKey(k Key) bool { return e.b.cols[k.id].typ(e.i) != Absent }

// NumOf returns property k as a number, or 0 if it is absent or not a number.
func (e Event) NumOf(k Key) float64 {
	c := &e.b.cols[k.id]
	if uint(e.i) < uint(len(c.t)) && c.t[e.i] == Number {
		return math.Float64frombits(c.v[e.i])
	}
	return 0
}

// NumOfOK returns property k as a number and whether it is one.
func (e Event) NumOfOK(k Key) (float64, bool) { return e.b.cols[k.id].num(e.i) }

// StrOf returns property k as a string, or "" if it is absent or not a string.
func (e Event) StrOf(k Key) string { s, _ := e.b.strOf(k, e.i); return s }

// StrOfOK returns property k as a string and whether it is one.
func (e Event) StrOfOK(k Key) (string, bool) { return e.b.strOf(k, e.i) }

// BoolOf returns property k as a bool, false if it is absent or not a bool.
func (e Event) BoolOf(k Key) bool { return e.b.cols[k.id].typ(e.i) == True }

// JSONOf returns a nested (array or object) property k as JSON text, or nil.
func (e Event) JSONOf(k Key) []byte { return e.b.jsonOf(k, e.i) }

// TypeOf returns the type of attribute k, Absent if there is none.
func (p Profile) TypeOf(k Key) Type { return p.b.cols[k.id].typ(p.i) }

// HasKey reports whether the profile has attribute k (even if it is null).
func (p Profile) HasKey(k Key) bool { return p.b.cols[k.id].typ(p.i) != Absent }

// NumOf returns attribute k as a number, or 0 if it is absent or not a number.
func (p Profile) NumOf(k Key) float64 {
	c := &p.b.cols[k.id]
	if uint(p.i) < uint(len(c.t)) && c.t[p.i] == Number {
		return math.Float64frombits(c.v[p.i])
	}
	return 0
}

// NumOfOK returns attribute k as a number and whether it is one.
func (p Profile) NumOfOK(k Key) (float64, bool) { return p.b.cols[k.id].num(p.i) }

// StrOf returns attribute k as a string, or "" if it is absent or not a string.
func (p Profile) StrOf(k Key) string { s, _ := p.b.strOf(k, p.i); return s }

// StrOfOK returns attribute k as a string and whether it is one.
func (p Profile) StrOfOK(k Key) (string, bool) { return p.b.strOf(k, p.i) }

// BoolOf returns attribute k as a bool, false if it is absent or not a bool.
func (p Profile) BoolOf(k Key) bool { return p.b.cols[k.id].typ(p.i) == True }

// JSONOf returns a nested (array or object) attribute k as JSON text, or nil.
func (p Profile) JSONOf(k Key) []byte { return p.b.jsonOf(k, p.i) }

func (b *batch) strOf(k Key, i int) (string, bool) {
	c := &b.cols[k.id]
	if c.typ(i) != String {
		return "", false
	}
	return b.ref(c.v[i]), true
}

func (b *batch) jsonOf(k Key, i int) []byte {
	c := &b.cols[k.id]
	if c.typ(i) != JSON {
		return nil
	}
	v := c.v[i]
	p, l := int(uint32(v)), int(v>>32)
	if p+l > len(b.data) {
		return nil
	}
	return b.data[p : p+l : p+l]
}
