package plugins

import (
	"encoding/binary"
	"encoding/json"
	"math"

	"github.com/segd/segd/rules"
)

// ABI constants (sdk/ABI.md). They are repeated here rather than imported so
// that the host does not depend on the guest SDK.
const (
	abiMajor   = 1
	abiMinor   = 0
	abiVersion = abiMajor<<16 | abiMinor
	batchMagic = 0x31424753
	headerSize = 64

	kindEvents   = 1
	kindProfiles = 2

	tAbsent = 0
	tNull   = 1
	tFalse  = 2
	tTrue   = 3
	tNumber = 4
	tString = 5
	tJSON   = 6
)

var le = binary.LittleEndian

// encoder builds ABI v1 batches. It keeps its buffers between batches, so a
// warm encoder allocates nothing for flat properties. Not goroutine-safe:
// each instance owns one.
type encoder struct {
	buf    []byte
	keyIdx map[string]int
	keys   []string
	tmp    []pending
}

// pending is one property value waiting for the key table to be complete.
type pending struct {
	j, i int32
	v    any
}

// item reads item i of a batch: user, name, time, properties.
type item func(i int) (user, name string, t int64, props map[string]any)

func align8(n int) int { return (n + 7) &^ 7 }

// encode lays out items [0, n) as a batch of kind. declared, if not empty, is
// the fixed key table (manifest props); otherwise every property is sent.
func (e *encoder) encode(kind uint32, now int64, n int, get item, declared []string) []byte {
	keys := declared
	if len(declared) == 0 {
		if e.keyIdx == nil {
			e.keyIdx = make(map[string]int)
		}
		clear(e.keyIdx)
		e.keys = e.keys[:0]
		e.tmp = e.tmp[:0]
		for i := 0; i < n; i++ {
			_, _, _, props := get(i)
			for k, v := range props {
				j, ok := e.keyIdx[k]
				if !ok {
					j = len(e.keys)
					e.keyIdx[k] = j
					e.keys = append(e.keys, k)
				}
				e.tmp = append(e.tmp, pending{int32(j), int32(i), v})
			}
		}
		keys = e.keys
	}
	k := len(keys)
	users := headerSize
	names := users + 8*n
	times := names + 8*n
	keyOff := times + 8*n
	types := keyOff + 8*k
	values := align8(types + k*n)
	heap := values + 8*k*n
	b := e.buf[:0]
	if cap(b) < heap {
		b = make([]byte, heap, heap+heap/2+1024)
	} else {
		b = b[:heap]
		clear(b)
	}
	le.PutUint32(b[0:], batchMagic)
	le.PutUint32(b[4:], abiVersion)
	le.PutUint32(b[8:], kind)
	le.PutUint32(b[12:], uint32(n))
	le.PutUint64(b[16:], uint64(now))
	le.PutUint32(b[24:], uint32(k))
	le.PutUint32(b[32:], uint32(users))
	le.PutUint32(b[36:], uint32(names))
	le.PutUint32(b[40:], uint32(times))
	le.PutUint32(b[44:], uint32(keyOff))
	le.PutUint32(b[48:], uint32(types))
	le.PutUint32(b[52:], uint32(values))
	le.PutUint32(b[56:], uint32(heap))
	for j, key := range keys {
		b = putStr(b, keyOff+8*j, key)
	}
	for i := 0; i < n; i++ {
		user, name, t, props := get(i)
		b = putStr(b, users+8*i, user)
		if name != "" {
			b = putStr(b, names+8*i, name)
		}
		le.PutUint64(b[times+8*i:], uint64(t))
		if len(declared) > 0 && len(props) > 0 {
			for j, key := range declared {
				if v, ok := props[key]; ok {
					b = putValue(b, types+j*n+i, values+8*(j*n+i), v)
				}
			}
		}
	}
	if len(declared) == 0 {
		for _, p := range e.tmp {
			j, i := int(p.j), int(p.i)
			b = putValue(b, types+j*n+i, values+8*(j*n+i), p.v)
		}
		clear(e.tmp) // drop references to the caller's values
	}
	le.PutUint32(b[60:], uint32(len(b)-heap))
	le.PutUint32(b[28:], uint32(len(b)))
	e.buf = b
	return b
}

// putStr appends s to the heap and writes its reference at ref.
func putStr(b []byte, ref int, s string) []byte {
	le.PutUint64(b[ref:], uint64(len(b))|uint64(len(s))<<32)
	return append(b, s...)
}

// putValue writes the type tag at t and the value slot at v.
func putValue(b []byte, t, v int, x any) []byte {
	var f float64
	switch x := x.(type) {
	case float64:
		f = x
	case string:
		b[t] = tString
		return putStr(b, v, x)
	case bool:
		b[t] = tFalse
		if x {
			b[t] = tTrue
		}
		return b
	case nil:
		b[t] = tNull
		return b
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case int32:
		f = float64(x)
	case uint:
		f = float64(x)
	case uint64:
		f = float64(x)
	case uint32:
		f = float64(x)
	case float32:
		f = float64(x)
	case json.Number:
		g, err := x.Float64()
		if err != nil {
			b[t] = tString
			return putStr(b, v, string(x))
		}
		f = g
	default:
		js, err := json.Marshal(x)
		if err != nil {
			b[t] = tNull
			return b
		}
		b[t] = tJSON
		le.PutUint64(b[v:], uint64(len(b))|uint64(len(js))<<32)
		return append(b, js...)
	}
	b[t] = tNumber
	le.PutUint64(b[v:], math.Float64bits(f))
	return b
}

// eventItem adapts a slice of events.
func eventItem(ev []rules.Event) item {
	return func(i int) (string, string, int64, map[string]any) {
		e := &ev[i]
		return e.User, e.Name, e.Time, e.Props
	}
}

// profileItem adapts a slice of profiles.
func profileItem(ps []rules.Profile) item {
	return func(i int) (string, string, int64, map[string]any) {
		p := &ps[i]
		return p.User, "", 0, p.Attrs
	}
}
