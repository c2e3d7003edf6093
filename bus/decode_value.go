package bus

// The value readers of BatchDecoder. Each starts at d.pos on the value's
// first byte and leaves d.pos after it. They return false (ok) for
// anything they leave to the slow way: malformed JSON, invalid UTF-8, an
// unpaired surrogate escape, a duplicate key, a number beyond float64,
// nesting past MaxItemDepth. depth is the nesting level of the container
// holding the value (the item is level 1); a container value opens
// level depth+1.

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
