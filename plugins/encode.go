package plugins

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"

	"github.com/segd/segd/rules"
)

// ABI constants (sdk/ABI.md). They are repeated here rather than imported so
// that the host does not depend on the guest SDK.
const (
	abiMajor   = 1
	abiMinor   = 1
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

// encoder builds ABI v1 batches. It keeps its scratch state between
// batches, so a warm encoder allocates nothing for flat properties. Not
// goroutine-safe: each instance owns one.
type encoder struct {
	keyIdx map[string]int
	keys   []string
	tmp    []pending
	// omitted fields (manifest omit): sent as "" or 0.
	noUser, noName, noTime bool
}

// pending is one property value waiting for the key table to be complete.
type pending struct {
	j, i int32
	v    any
}

// items is the input of a batch: events or profiles.
type items struct {
	ev []rules.Event
	ps []rules.Profile
}

func (s items) len() int {
	if s.ps != nil {
		return len(s.ps)
	}
	return len(s.ev)
}

// slice returns items [i, j).
func (s items) slice(i, j int) items {
	if s.ps != nil {
		return items{ps: s.ps[i:j]}
	}
	return items{ev: s.ev[i:j]}
}

// get reads item i: user, name, time, properties.
func (s items) get(i int) (user, name string, t int64, props map[string]any) {
	if s.ps != nil {
		p := &s.ps[i]
		return p.User, "", 0, p.Attrs
	}
	e := &s.ev[i]
	return e.User, e.Name, e.Time, e.Props
}

func align8(n int) int { return (n + 7) &^ 7 }

// fixedSize is the size of a batch of n items and k keys without its heap.
func fixedSize(n, k int) int { return align8(headerSize+24*n+8*k+k*n) + 8*k*n }

// encode lays out src as a batch of kind into dst[:0], growing it like
// append when its capacity is short (the caller compares the result with
// dst to tell). Every byte of the batch is written, so dst need not be
// zeroed. declared, if not nil, is the fixed key table (the manifest's
// props, or what the plugin declared through segd_props); nil sends every
// property.
func (e *encoder) encode(dst []byte, kind uint32, now int64, src items, declared []string) []byte {
	n := src.len()
	keys := declared
	if declared == nil {
		if e.keyIdx == nil {
			e.keyIdx = make(map[string]int)
		}
		clear(e.keyIdx)
		e.keys = e.keys[:0]
		e.tmp = e.tmp[:0]
		for i := 0; i < n; i++ {
			_, _, _, props := src.get(i)
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
	b := dst[:0]
	if cap(b) < heap+16*n {
		b = make([]byte, 0, heap+heap/2+32*n+1024)
	}
	b = b[:cap(b)] // written up to h; b[:h] is the batch
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
	clear(b[types+k*n : values]) // alignment padding
	h := heap
	for j, key := range keys {
		le.PutUint64(b[keyOff+8*j:], uint64(h)|uint64(len(key))<<32)
		if h+len(key) > len(b) {
			b = slices.Grow(b[:h], len(key))
			b = b[:cap(b)]
		}
		h += copy(b[h:], key)
	}
	// Equal consecutive user ids and event names share one heap copy.
	var lastUser, lastName string
	var userRef, nameRef uint64
	if e.noUser || e.noName || e.noTime {
		clear(b[users:keyOff])
	}
	for i := 0; i < n; i++ {
		user, name, t, props := src.get(i)
		if e.noUser {
			user = ""
		}
		if e.noName {
			name = ""
		}
		if e.noTime {
			t = 0
		}
		if h+len(user)+len(name) > len(b) {
			b = slices.Grow(b[:h], len(user)+len(name)+h/2)
			b = b[:cap(b)]
		}
		if i == 0 || user != lastUser {
			userRef = uint64(h) | uint64(len(user))<<32
			h += copy(b[h:], user)
			lastUser = user
		}
		le.PutUint64(b[users+8*i:], userRef)
		ref := uint64(0)
		if name != "" {
			if name != lastName {
				nameRef = uint64(h) | uint64(len(name))<<32
				h += copy(b[h:], name)
				lastName = name
			}
			ref = nameRef
		}
		le.PutUint64(b[names+8*i:], ref)
		le.PutUint64(b[times+8*i:], uint64(t))
		for j, key := range declared {
			s := j*n + i
			v, ok := props[key]
			if f, isNum := v.(float64); isNum {
				b[types+s] = tNumber
				le.PutUint64(b[values+8*s:], math.Float64bits(f))
			} else if ok {
				b = putValue(b[:h], types+s, values+8*s, v)
				h = len(b)
				b = b[:cap(b)]
			} else {
				b[types+s] = tAbsent
				le.PutUint64(b[values+8*s:], 0)
			}
		}
	}
	b = b[:h]
	if declared == nil {
		clear(b[types:heap]) // every slot starts absent
		for _, p := range e.tmp {
			j, i := int(p.j), int(p.i)
			b = putValue(b, types+j*n+i, values+8*(j*n+i), p.v)
		}
		clear(e.tmp) // drop references to the caller's values
	}
	le.PutUint32(b[60:], uint32(len(b)-heap))
	le.PutUint32(b[28:], uint32(len(b)))
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
		le.PutUint64(b[v:], 0)
		return b
	case nil:
		b[t] = tNull
		le.PutUint64(b[v:], 0)
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
			le.PutUint64(b[v:], 0)
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
