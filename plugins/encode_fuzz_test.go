package plugins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/segd/segd/rules"
)

// fuzzInput turns fuzz bytes into an encoder input: a batch of events or
// profiles with arbitrary users, names, times and properties (every value
// type the host may hold, nested ones and unencodable ones included), an
// optional declared key table, omitted fields, and a destination buffer of
// arbitrary capacity full of garbage.
type fuzzInput struct {
	data []byte
}

func (f *fuzzInput) byte() byte {
	if len(f.data) == 0 {
		return 0
	}
	b := f.data[0]
	f.data = f.data[1:]
	return b
}

func (f *fuzzInput) u64() uint64 {
	var x uint64
	for range 8 {
		x = x<<8 | uint64(f.byte())
	}
	return x
}

// str returns a short string; few distinct ones, so that keys, users and
// names repeat.
func (f *fuzzInput) str() string {
	switch b := f.byte(); {
	case b < 64:
		return string(rune('a' + b%4))
	case b < 128:
		return ""
	default:
		n := int(f.byte() % 24)
		if n > len(f.data) {
			n = len(f.data)
		}
		s := string(f.data[:n])
		f.data = f.data[n:]
		return s
	}
}

func (f *fuzzInput) value(depth int) any {
	switch f.byte() % 16 {
	case 0:
		return nil
	case 1:
		return f.byte()%2 == 0
	case 2:
		return math.Float64frombits(f.u64()) // NaN and infinities included
	case 3:
		return float64(int8(f.byte()))
	case 4:
		return f.str()
	case 5:
		return int(int64(f.u64()))
	case 6:
		return int64(f.u64())
	case 7:
		return uint64(f.u64())
	case 8:
		return float32(int8(f.byte())) / 4
	case 9:
		return json.Number(f.str()) // often not a number
	case 10:
		return int32(f.byte())
	case 11:
		if depth > 3 {
			return nil
		}
		m := map[string]any{}
		for range f.byte() % 4 {
			m[f.str()] = f.value(depth + 1)
		}
		return m
	case 12:
		if depth > 3 {
			return "deep"
		}
		var s []any
		for range f.byte() % 4 {
			s = append(s, f.value(depth+1))
		}
		return s
	case 13:
		return []any{math.Inf(1)} // json.Marshal fails: sent as null
	case 14:
		return uint32(f.byte())
	default:
		return float64(f.u64() % 1000)
	}
}

func (f *fuzzInput) props() map[string]any {
	if f.byte()%8 == 0 {
		return nil
	}
	m := map[string]any{}
	for range f.byte() % 6 {
		m[f.str()] = f.value(0)
	}
	return m
}

// batch builds the input of one encode call.
func (f *fuzzInput) batch() (kind uint32, now int64, src items, declared []string, enc encoder, dst []byte) {
	flags := f.byte()
	kind = kindEvents
	if flags&1 != 0 {
		kind = kindProfiles
	}
	enc.noUser, enc.noName, enc.noTime = flags&2 != 0, flags&4 != 0, flags&8 != 0
	if flags&16 != 0 {
		declared = []string{}
		for range f.byte() % 5 {
			declared = append(declared, f.str())
		}
	}
	now = int64(f.u64())
	n := int(f.byte() % 80)
	if kind == kindProfiles {
		src.ps = make([]rules.Profile, n)
		for i := range src.ps {
			src.ps[i] = rules.Profile{User: f.str(), Attrs: f.props()}
		}
	} else {
		src.ev = make([]rules.Event, n)
		for i := range src.ev {
			src.ev[i] = rules.Event{User: f.str(), Name: f.str(), Time: int64(f.u64()), Props: f.props()}
		}
	}
	dst = bytes.Repeat([]byte{0xa5}, int(f.byte())*int(f.byte()))
	return
}

// wantValue is how the ABI carries a property value: its type tag and
// either the value slot (numbers, and zero for the others) or the bytes
// the slot refers to (strings and JSON).
func wantValue(v any, present bool) (tag byte, slot uint64, text []byte) {
	if !present {
		return tAbsent, 0, nil
	}
	num := func(f float64) (byte, uint64, []byte) { return tNumber, math.Float64bits(f), nil }
	switch x := v.(type) {
	case nil:
		return tNull, 0, nil
	case bool:
		if x {
			return tTrue, 0, nil
		}
		return tFalse, 0, nil
	case float64:
		return num(x)
	case float32:
		return num(float64(x))
	case int:
		return num(float64(x))
	case int64:
		return num(float64(x))
	case int32:
		return num(float64(x))
	case uint:
		return num(float64(x))
	case uint64:
		return num(float64(x))
	case uint32:
		return num(float64(x))
	case string:
		return tString, 0, []byte(x)
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return num(f)
		}
		return tString, 0, []byte(x)
	}
	js, err := json.Marshal(v)
	if err != nil {
		return tNull, 0, nil
	}
	return tJSON, 0, js
}

// checkBatch decodes b by the layout of sdk/ABI.md, independently of the
// encoder, and compares every field with what was encoded.
func checkBatch(kind uint32, now int64, src items, declared []string, enc *encoder, b []byte) error {
	u32 := func(off int) int { return int(le.Uint32(b[off:])) }
	if len(b) < headerSize {
		return fmt.Errorf("%d bytes, shorter than the header", len(b))
	}
	n := src.len()
	if le.Uint32(b[0:]) != batchMagic || le.Uint32(b[4:]) != abiVersion || le.Uint32(b[8:]) != kind ||
		u32(12) != n || int64(le.Uint64(b[16:])) != now || u32(28) != len(b) {
		return fmt.Errorf("header %x: want kind %d, n %d, now %d, length %d", b[:32], kind, n, now, len(b))
	}
	k := u32(24)
	users, names, times, keys, types, values, heap, heapLen := u32(32), u32(36), u32(40), u32(44), u32(48), u32(52), u32(56), u32(60)
	for _, c := range []struct {
		name      string
		off, size int
	}{{"users", users, 8 * n}, {"names", names, 8 * n}, {"times", times, 8 * n}, {"keys", keys, 8 * k},
		{"types", types, k * n}, {"values", values, 8 * k * n}, {"heap", heap, heapLen}} {
		if c.off < headerSize || c.off+c.size > len(b) {
			return fmt.Errorf("column %s [%d, +%d) outside the %d-byte batch", c.name, c.off, c.size, len(b))
		}
	}
	if times%8 != 0 || values%8 != 0 || heap+heapLen != len(b) {
		return fmt.Errorf("times %d or values %d not aligned, or the heap [%d, +%d) does not end the %d-byte batch", times, values, heap, heapLen, len(b))
	}
	str := func(at int) ([]byte, error) {
		ref := le.Uint64(b[at:])
		off, l := int(uint32(ref)), int(ref>>32)
		if l == 0 {
			return nil, nil
		}
		if off < heap || off+l > len(b) {
			return nil, fmt.Errorf("string ref [%d, +%d) at %d outside the heap [%d, %d)", off, l, at, heap, len(b))
		}
		return b[off : off+l], nil
	}
	// The key table: distinct keys, the declared ones or every key held.
	keyIdx := map[string]int{}
	for j := range k {
		key, err := str(keys + 8*j)
		if err != nil {
			return err
		}
		if _, dup := keyIdx[string(key)]; dup && declared == nil {
			return fmt.Errorf("key %q is in the key table twice", key)
		}
		keyIdx[string(key)] = j
	}
	if declared != nil {
		if k != len(declared) {
			return fmt.Errorf("%d keys, %d declared", k, len(declared))
		}
	} else {
		held := map[string]bool{}
		for i := range n {
			_, _, _, props := src.get(i)
			for key := range props {
				held[key] = true
			}
		}
		if len(held) != k {
			return fmt.Errorf("%d keys in the table, the items hold %d", k, len(held))
		}
	}
	for i := range n {
		user, name, t, props := src.get(i)
		if enc.noUser {
			user = ""
		}
		if enc.noName {
			name = ""
		}
		if enc.noTime {
			t = 0
		}
		gotUser, err := str(users + 8*i)
		if err != nil {
			return err
		}
		gotName, err := str(names + 8*i)
		if err != nil {
			return err
		}
		if string(gotUser) != user || string(gotName) != name || int64(le.Uint64(b[times+8*i:])) != t {
			return fmt.Errorf("item %d: user %q, name %q, time %d; want %q, %q, %d", i, gotUser, gotName, int64(le.Uint64(b[times+8*i:])), user, name, t)
		}
		for j := range k {
			key, _ := str(keys + 8*j)
			v, present := props[string(key)]
			tag, slot, text := wantValue(v, present)
			s := j*n + i
			gotTag, gotSlot := b[types+s], le.Uint64(b[values+8*s:])
			if gotTag != tag {
				return fmt.Errorf("item %d, key %q (%T %v): type %d, want %d", i, key, v, v, gotTag, tag)
			}
			switch tag {
			case tString, tJSON:
				got, err := str(values + 8*s)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, text) {
					return fmt.Errorf("item %d, key %q: %q, want %q", i, key, got, text)
				}
			default:
				if gotSlot != slot {
					return fmt.Errorf("item %d, key %q (%T %v): slot %#x, want %#x", i, key, v, v, gotSlot, slot)
				}
			}
		}
	}
	return nil
}

// FuzzEncodeBatch: whatever the items, the ABI batch encoder does not panic,
// writes every byte it returns (the destination starts full of garbage),
// and its batch decodes, by sdk/ABI.md's layout, to exactly what it was
// given. The encoder is reused, as an instance reuses its own.
func FuzzEncodeBatch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 200, 4, 'a', 'm', 't', 0})
	f.Add(bytes.Repeat([]byte{17, 9, 200, 3, 'k', 'e', 'y', 11, 2, 12, 4, 2, 13}, 40))
	f.Add(bytes.Repeat([]byte{1, 250, 7, 0, 5, 66, 4, 130, 2, 'x', 'y'}, 60))
	f.Add(bytes.Repeat([]byte{30, 3, 9, 0, 9, 1, 4, 2, 10}, 80))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{data: data}
		var enc encoder
		for round := 0; round < 2; round++ { // a warm encoder, too
			kind, now, src, declared, e, dst := in.batch()
			enc.noUser, enc.noName, enc.noTime = e.noUser, e.noName, e.noTime
			b := enc.encode(dst[:0], kind, now, src, declared)
			if err := checkBatch(kind, now, src, declared, &enc, b); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	})
}
