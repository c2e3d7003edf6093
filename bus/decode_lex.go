package bus

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// The lexical readers of BatchDecoder: white space, strings, numbers and
// literals, at d.pos. Like the value readers they return false for what
// they leave to the slow way.

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
