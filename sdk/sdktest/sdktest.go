// Package sdktest builds segd batches natively, so that a plugin written with
// package sdk can be unit-tested with go test, without a host or a WASM
// runtime: encode a few events with Events, judge them with Match.
//
//	func TestBig(t *testing.T) {
//		if err := sdk.Init([]byte(`{"min": 100}`)); err != nil {
//			t.Fatal(err)
//		}
//		got, err := sdktest.Match(sdktest.Events(0,
//			sdktest.Event{Props: map[string]any{"amount": 150.0}},
//			sdktest.Event{Props: map[string]any{"amount": 50.0}}))
//		// got == []bool{true, false}
//	}
//
// The layout is the one of ABI.md in the sdk directory, as the host writes it
// (property keys sorted, every string in the heap once per occurrence).
package sdktest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/segd/segd/sdk"
)

// Event is one event to encode. Props values may be nil, bool, string, any
// Go number (sent as a float64) or anything else JSON can encode (sent as a
// nested value, as its JSON text).
type Event struct {
	User  string
	Name  string
	Time  int64 // Unix milliseconds
	Props map[string]any
}

// Profile is one user profile to encode; Attrs are typed like Event.Props.
type Profile struct {
	User  string
	Attrs map[string]any
}

// Events encodes an event batch whose host clock reads now (Unix ms).
func Events(now int64, evs ...Event) []byte {
	its := make([]item, len(evs))
	for i, e := range evs {
		its[i] = item{e.User, e.Name, e.Time, e.Props}
	}
	return encode(sdk.KindEvents, now, its)
}

// Profiles encodes a profile batch whose host clock reads now (Unix ms).
func Profiles(now int64, ps ...Profile) []byte {
	its := make([]item, len(ps))
	for i, p := range ps {
		its[i] = item{p.User, "", 0, p.Attrs}
	}
	return encode(sdk.KindProfiles, now, its)
}

// Match judges an encoded batch with the handler the plugin registered
// (sdk.Run) and returns one answer per item.
func Match(batch []byte) ([]bool, error) {
	if len(batch) < sdk.HeaderSize {
		return nil, fmt.Errorf("sdktest: batch of %d bytes has no header", len(batch))
	}
	n := int(binary.LittleEndian.Uint32(batch[12:]))
	out := make([]uint64, (n+63)/64)
	if err := sdk.Run(batch, out); err != nil {
		return nil, err
	}
	got := make([]bool, n)
	for i := range got {
		got[i] = out[i/64]&(1<<(i%64)) != 0
	}
	return got, nil
}

type item struct {
	user, name string
	time       int64
	props      map[string]any
}

func encode(kind uint32, now int64, its []item) []byte {
	le := binary.LittleEndian
	n := len(its)
	seen := map[string]bool{}
	var keys []string
	for _, it := range its {
		for k := range it.props {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	k := len(keys)
	align := func(x int) int { return (x + 7) &^ 7 }
	users := sdk.HeaderSize
	names := users + 8*n
	times := names + 8*n
	keyTab := times + 8*n
	values := keyTab + 8*k
	types := values + 8*k*n
	heap := align(types + k*n)
	var strs []byte
	var b []byte // the fixed part, grown to heap below
	b = make([]byte, heap)
	ref := func(at int, s string) {
		le.PutUint32(b[at:], uint32(heap+len(strs)))
		le.PutUint32(b[at+4:], uint32(len(s)))
		strs = append(strs, s...)
	}
	for i, it := range its {
		ref(users+8*i, it.user)
		ref(names+8*i, it.name)
		le.PutUint64(b[times+8*i:], uint64(it.time))
	}
	for j, key := range keys {
		ref(keyTab+8*j, key)
		for i, it := range its {
			v, ok := it.props[key]
			slot := j*n + i
			t := sdk.Absent
			switch x := v.(type) {
			case nil:
				if ok {
					t = sdk.Null
				}
			case bool:
				t = sdk.False
				if x {
					t = sdk.True
				}
			case string:
				t = sdk.String
				ref(values+8*slot, x)
			default:
				if f, isNum := number(x); isNum {
					t = sdk.Number
					le.PutUint64(b[values+8*slot:], math.Float64bits(f))
					break
				}
				js, err := json.Marshal(x)
				if err != nil {
					panic(fmt.Sprintf("sdktest: property %q of item %d: %v", key, i, err))
				}
				t = sdk.JSON
				ref(values+8*slot, string(js))
			}
			b[types+slot] = byte(t)
		}
	}
	b = append(b, strs...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	h := b[:sdk.HeaderSize]
	for at, v := range map[int]uint32{0: sdk.Magic, 4: sdk.ABIVersion, 8: kind, 12: uint32(n), 24: uint32(k),
		28: uint32(len(b)), 32: uint32(users), 36: uint32(names), 40: uint32(times), 44: uint32(keyTab),
		48: uint32(types), 52: uint32(values), 56: uint32(heap), 60: uint32(len(strs))} {
		le.PutUint32(h[at:], v)
	}
	le.PutUint64(h[16:], uint64(now))
	return b
}

// number converts any Go number to a float64.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}
