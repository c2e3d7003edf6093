package bus

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The value readers of BatchDecoder. Each starts at d.pos on the value's
// first byte and leaves d.pos after it. They return false (ok) for
// anything they leave to the slow way: malformed JSON, invalid UTF-8, an
// unpaired surrogate escape, a duplicate key, a number beyond float64,
// nesting past MaxItemDepth. depth is the nesting level of the container
// holding the value (the item is level 1); a container value opens
// level depth+1.

func (d *BatchDecoder) skipSpace() {
	data := d.data
	for d.pos < len(data) {
		switch data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// plain marks the bytes a string holds as they are: printable ASCII but
// the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string and returns its text: a view of the message, or of
// d.buf when it has escapes (valid until the next str).
func (d *BatchDecoder) str() ([]byte, bool) {
	data := d.data
	from := d.pos + 1
	i := from
	ascii := true
	for {
		// Eight bytes at a time while they are plain.
		for i+8 <= len(data) && plain[data[i]] && plain[data[i+1]] && plain[data[i+2]] && plain[data[i+3]] &&
			plain[data[i+4]] && plain[data[i+5]] && plain[data[i+6]] && plain[data[i+7]] {
			i += 8
		}
		if i >= len(data) {
			return nil, false
		}
		switch c := data[i]; {
		case plain[c]:
			i++
		case c == '"':
			s := data[from:i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			d.pos = i + 1
			return s, true
		case c == '\\':
			return d.strEscaped(from, i)
		case c < 0x20:
			return nil, false
		default:
			ascii = false
			i++
		}
	}
}

// strEscaped goes on with a string from its first backslash at i,
// unescaping into d.buf as encoding/json does.
func (d *BatchDecoder) strEscaped(from, i int) ([]byte, bool) {
	data := d.data
	buf := append(d.buf[:0], data[from:i]...)
	seg := i // the start of the text not yet copied
	ascii := true
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(data[from:i]) {
				return nil, false
			}
			buf = append(buf, data[seg:i]...)
			d.buf = buf
			d.pos = i + 1
			return buf, true
		case c == '\\':
			buf = append(buf, data[seg:i]...)
			if i+1 >= len(data) {
				return nil, false
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
				i += 2
			case 'b':
				buf, i = append(buf, '\b'), i+2
			case 'f':
				buf, i = append(buf, '\f'), i+2
			case 'n':
				buf, i = append(buf, '\n'), i+2
			case 'r':
				buf, i = append(buf, '\r'), i+2
			case 't':
				buf, i = append(buf, '\t'), i+2
			case 'u':
				r, ok := hex4(data, i+2)
				if !ok {
					return nil, false
				}
				i += 6
				switch {
				case 0xD800 <= r && r < 0xDC00:
					lo, ok := hex4(data, i+2)
					if !ok || data[i] != '\\' || data[i+1] != 'u' || lo < 0xDC00 || lo >= 0xE000 {
						return nil, false // unpaired
					}
					r = (r-0xD800)<<10 | (lo - 0xDC00) + 0x10000
					i += 6
				case 0xDC00 <= r && r < 0xE000:
					return nil, false // unpaired
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return nil, false
			}
			seg = i
		case c < 0x20:
			return nil, false
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			i++
		}
	}
	return nil, false
}

// hex4 reads four hex digits at i.
func hex4(data []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipStr reads a string for its syntax only.
func (d *BatchDecoder) skipStr() bool {
	data := d.data
	i := d.pos + 1
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return true
		case c == '\\':
			if i+1 >= len(data) {
				return false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(data, i+2); !ok {
					return false
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++
		}
	}
	return false
}

// numberSyntax reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *BatchDecoder) numberSyntax() bool {
	data, i := d.data, d.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = digitsFrom(data, i+1)
	default:
		return false
	}
	if i < len(data) && data[i] == '.' {
		j := digitsFrom(data, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digitsFrom(data, i)
		if j == i {
			return false
		}
		i = j
	}
	d.pos = i
	return true
}

func digitsFrom(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}

func (d *BatchDecoder) literal(word string) bool {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		return false
	}
	d.pos += len(word)
	return true
}

// value reads and builds a value as encoding/json builds an any.
func (d *BatchDecoder) value(depth int) (any, bool) {
	data := d.data
	if d.pos >= len(data) {
		return nil, false
	}
	switch c := data[d.pos]; c {
	case '"':
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		return d.box(s), true
	case '{':
		m, ok := d.object(depth + 1)
		return m, ok
	case '[':
		return d.list(depth + 1)
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	}
	from := d.pos
	if !d.numberSyntax() {
		return nil, false
	}
	f, ok := parseNumber(data[from:d.pos])
	if !ok {
		return nil, false // beyond float64: the item is invalid
	}
	return boxFloat(f), true
}

// object reads an object at level depth into a map of its exact size
// (past largeObject members, one that grows). A key of props or profile
// (level 2) longer than MaxNameBytes, and a duplicate key, make the item
// invalid.
func (d *BatchDecoder) object(depth int) (map[string]any, bool) {
	if depth > MaxItemDepth {
		return nil, false
	}
	data := d.data
	d.pos++
	d.skipSpace()
	if d.pos < len(data) && data[d.pos] == '}' {
		d.pos++
		return make(map[string]any), true
	}
	base := len(d.pairs)
	var large map[string]any // built as it goes, past largeObject members
	for {
		if d.pos >= len(data) || data[d.pos] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok || (depth == 2 && len(k) > MaxNameBytes) {
			return nil, false
		}
		key := d.intern(unsafeString(k))
		d.skipSpace()
		if d.pos >= len(data) || data[d.pos] != ':' {
			return nil, false
		}
		d.pos++
		d.skipSpace()
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		if large != nil {
			n := len(large)
			if large[key] = v; len(large) == n {
				return nil, false // a duplicate key
			}
		} else if d.pairs = append(d.pairs, pair{key, v}); len(d.pairs)-base == largeObject {
			if large = d.mapOf(base); large == nil {
				return nil, false
			}
		}
		d.skipSpace()
		if d.pos >= len(data) {
			return nil, false
		}
		if data[d.pos] == ',' {
			d.pos++
			d.skipSpace()
			continue
		}
		if data[d.pos] != '}' {
			return nil, false
		}
		d.pos++
		break
	}
	if large != nil {
		return large, true
	}
	m := d.mapOf(base)
	return m, m != nil
}

// largeObject is the size past which an object's map is built as it is
// read: a duplicate among many keys is found at once, and the members
// stack stays short.
const largeObject = 64

// mapOf makes a map of the members stacked from base and pops them; nil
// if a key repeats.
func (d *BatchDecoder) mapOf(base int) map[string]any {
	members := d.pairs[base:]
	m := make(map[string]any, len(members))
	for _, p := range members {
		m[p.key] = p.val
	}
	n := len(members)
	clear(members)
	d.pairs = d.pairs[:base]
	if len(m) != n {
		return nil // a duplicate key
	}
	return m
}

// list reads an array at level depth into a slice of its exact size.
func (d *BatchDecoder) list(depth int) (any, bool) {
	if depth > MaxItemDepth {
		return nil, false
	}
	data := d.data
	d.pos++
	d.skipSpace()
	if d.pos < len(data) && data[d.pos] == ']' {
		d.pos++
		return []any{}, true
	}
	base := len(d.elems)
	for {
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		d.elems = append(d.elems, v)
		d.skipSpace()
		if d.pos >= len(data) {
			return nil, false
		}
		if data[d.pos] == ',' {
			d.pos++
			d.skipSpace()
			continue
		}
		if data[d.pos] != ']' {
			return nil, false
		}
		d.pos++
		break
	}
	elems := d.elems[base:]
	s := make([]any, len(elems))
	copy(s, elems)
	clear(elems)
	d.elems = d.elems[:base]
	return s, true
}

// skip reads a value for its syntax only, up to MaxItemDepth.
func (d *BatchDecoder) skip(depth int) bool {
	data := d.data
	if d.pos >= len(data) {
		return false
	}
	switch c := data[d.pos]; c {
	case '"':
		return d.skipStr()
	case '{', '[':
		if depth+1 > MaxItemDepth {
			return false
		}
		d.pos++
		d.skipSpace()
		if d.pos < len(data) && data[d.pos] == c+2 { // '}' and ']' are '{' and '[' + 2
			d.pos++
			return true
		}
		for {
			if c == '{' {
				if d.pos >= len(data) || data[d.pos] != '"' || !d.skipStr() {
					return false
				}
				d.skipSpace()
				if d.pos >= len(data) || data[d.pos] != ':' {
					return false
				}
				d.pos++
				d.skipSpace()
			}
			if !d.skip(depth + 1) {
				return false
			}
			d.skipSpace()
			if d.pos >= len(data) {
				return false
			}
			if data[d.pos] == ',' {
				d.pos++
				d.skipSpace()
				continue
			}
			if data[d.pos] != c+2 {
				return false
			}
			d.pos++
			return true
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	}
	return d.numberSyntax()
}

// intern returns s as a string, the same one for the same text while
// it stays in the cache. s may be a view of the message: what is kept is
// a copy.
func (d *BatchDecoder) intern(s string) string {
	if len(s) > maxCached {
		return strings.Clone(s)
	}
	if d.strs == nil {
		d.strs = new([cacheSlots]string)
	}
	slot := &d.strs[cacheHash(s)%cacheSlots]
	if *slot != s {
		*slot = strings.Clone(s)
	}
	return *slot
}

// box returns s as an any holding a string, boxed once while it stays in
// the cache.
func (d *BatchDecoder) box(s []byte) any {
	if len(s) > maxCached {
		return string(s)
	}
	if d.vals == nil {
		d.vals = new([cacheSlots]boxed)
	}
	slot := &d.vals[cacheHash(unsafeString(s))%cacheSlots]
	if slot.s != string(s) || slot.v == nil {
		slot.s = string(s)
		slot.v = slot.s
	}
	return slot.v
}

// cacheHash is a quick hash of a short string (FNV-1a over 8-byte words).
func cacheHash(s string) uint64 {
	h := uint64(14695981039346656037) ^ uint64(len(s))
	for len(s) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s), 8))) * 1099511628211
		s = s[8:]
	}
	var tail uint64
	for i := 0; i < len(s); i++ {
		tail |= uint64(s[i]) << (8 * i)
	}
	h = (h ^ tail) * 1099511628211
	return h ^ h>>29
}

// smallFloats are the any values of the whole numbers 0..255, boxed once
// (an any of a float64 otherwise costs an allocation).
var smallFloats = func() (t [256]any) {
	for i := range t {
		t[i] = float64(i)
	}
	return t
}()

func boxFloat(f float64) any {
	if f >= 0 && f < float64(len(smallFloats)) && f == math.Trunc(f) && !math.Signbit(f) {
		return smallFloats[int(f)]
	}
	return f
}

// parseNumber converts a JSON number as encoding/json does (ParseFloat),
// directly for the integers a float64 holds exactly. It is false beyond
// float64's range.
func parseNumber(raw []byte) (float64, bool) {
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) <= 15 {
		n := int64(0)
		for _, c := range digits {
			if c < '0' || c > '9' {
				goto slow
			}
			n = n*10 + int64(c-'0')
		}
		f := float64(n)
		if raw[0] == '-' {
			f = -f // -0 too
		}
		return f, true
	}
slow:
	f, err := strconv.ParseFloat(unsafeString(raw), 64)
	return f, err == nil
}

// isInt64 reports whether a JSON number is an integer that fits int64
// (strconv.ParseInt's verdict).
func isInt64(raw []byte) bool {
	_, ok := smallInt(raw)
	if !ok {
		_, err := strconv.ParseInt(unsafeString(raw), 10, 64)
		ok = err == nil
	}
	return ok
}

// smallInt converts a JSON number of at most 18 digits without fraction
// or exponent.
func smallInt(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	n := int64(0)
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if raw[0] == '-' {
		n = -n
	}
	return n, true
}
