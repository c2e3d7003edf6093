package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// jsonScanner checks JSON text before encoding/json decodes it, for what
// encoding/json lets through or fails a whole message for: it finds the
// items of a batch without a nesting limit (encoding/json stops at 10,000
// levels, failing every item), and reports per item what makes it invalid
// though well-formed: nesting deeper than MaxItemDepth, invalid UTF-8 and
// unpaired surrogate escapes (which encoding/json turns into U+FFFD, so
// that different ids would become one), and duplicate object keys (of which
// encoding/json keeps the last). It does not recurse, so no input can
// exhaust the stack; its memory is one bit per open container.
type jsonScanner struct {
	data []byte
	pos  int
	// objects has a bit per open container, set for an object (one bit:
	// a megabyte of '[' costs 128 KiB); depth counts them. keys holds the
	// keys seen in the open objects up to MaxItemDepth, for duplicate
	// detection.
	objects []uint64
	depth   int
	keys    []keySet
	start   int    // where the value being scanned starts
	bad     error  // the first item-level problem of that value
	field   []byte // the top-level key being scanned, to name it in problems
	// quiet skips describing problems (bad is then errUndescribed): only
	// a batch's first invalid item is described, and formatting each
	// would cost more than scanning.
	quiet bool
}

// errUndescribed is a quiet scanner's item problem.
var errUndescribed = errors.New("invalid item")

// keySet holds the keys of one object: a list while short, a set beyond.
type keySet struct {
	list [][]byte
	set  map[string]struct{}
}

func (k *keySet) reset() {
	k.list = k.list[:0]
	k.set = nil
}

// add records key and reports whether it was new.
func (k *keySet) add(key []byte) bool {
	if k.set != nil {
		if _, dup := k.set[string(key)]; dup {
			return false
		}
		k.set[string(key)] = struct{}{}
		return true
	}
	for _, seen := range k.list {
		if bytes.Equal(seen, key) {
			return false
		}
	}
	if len(k.list) < 16 {
		k.list = append(k.list, key)
		return true
	}
	k.set = make(map[string]struct{}, 32)
	for _, seen := range k.list {
		k.set[string(seen)] = struct{}{}
	}
	k.set[string(key)] = struct{}{}
	return true
}

// errSyntax marks malformed JSON: the message (or NDJSON line) as a whole
// cannot be read.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

func (s *jsonScanner) syntax(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...), off: s.pos}
}

// itemProblem records the first problem of the value being scanned, with
// its offset from the value's start.
func (s *jsonScanner) itemProblem(format string, args ...any) {
	if s.bad != nil {
		return
	}
	if s.quiet {
		s.bad = errUndescribed
		return
	}
	s.bad = fmt.Errorf("%s at byte %d of the item", fmt.Sprintf(format, args...), s.pos-s.start)
	if s.field != nil {
		s.bad = fmt.Errorf("%q: %w", truncate(string(s.field), 64), s.bad)
	}
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value scans one JSON value starting at s.pos (after white space) and
// leaves s.pos after it. It returns a syntax error, or nil with s.bad set
// to the value's first item-level problem, if any.
func (s *jsonScanner) value() error {
	s.skipSpace()
	s.start, s.bad, s.field = s.pos, nil, nil
	s.objects, s.depth = s.objects[:0], 0
	for {
		// A value is expected here.
		if s.pos >= len(s.data) {
			return s.syntax("unexpected end of input")
		}
		switch c := s.data[s.pos]; {
		case c == '{' || c == '[':
			s.open(c)
			s.pos++
			s.skipSpace()
			if s.pos < len(s.data) && s.data[s.pos] == c+2 { // '}' and ']' are '{' and '[' + 2
				s.pos++
				s.depth--
				break
			}
			if c == '{' {
				if err := s.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if _, err := s.str(); err != nil {
				return err
			}
		case c == '-' || ('0' <= c && c <= '9'):
			if err := s.number(); err != nil {
				return err
			}
		case c == 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case c == 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case c == 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			return s.syntax("invalid character %q looking for a value", rune(c))
		}
		// After a value: close containers, or go on to the next element.
		for {
			if s.depth == 0 {
				return nil
			}
			s.skipSpace()
			if s.pos >= len(s.data) {
				return s.syntax("unexpected end of input")
			}
			top := s.top()
			c := s.data[s.pos]
			if c == top+2 {
				s.pos++
				s.depth--
				continue
			}
			if c != ',' {
				return s.syntax("invalid character %q after a value", rune(c))
			}
			s.pos++
			s.skipSpace()
			if top == '{' {
				if err := s.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// top is the innermost open container: '{' or '['.
func (s *jsonScanner) top() byte {
	d := s.depth - 1
	if s.objects[d/64]&(1<<(d%64)) != 0 {
		return '{'
	}
	return '['
}

// open enters a container; past MaxItemDepth the value is an invalid item.
func (s *jsonScanner) open(kind byte) {
	if s.depth%64 == 0 {
		s.objects = append(s.objects[:s.depth/64], 0)
	}
	bit := uint64(1) << (s.depth % 64)
	if kind == '{' {
		s.objects[s.depth/64] |= bit
	} else {
		s.objects[s.depth/64] &^= bit
	}
	s.depth++
	depth := s.depth
	if depth > MaxItemDepth {
		s.itemProblem("nested deeper than %d levels", MaxItemDepth)
		return
	}
	if kind == '{' {
		for len(s.keys) < depth {
			s.keys = append(s.keys, keySet{})
		}
		s.keys[depth-1].reset()
	}
}

// key scans an object key and the colon after it.
func (s *jsonScanner) key() error {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return s.syntax("want an object key")
	}
	keyAt := s.pos
	if s.depth == 1 {
		s.field = nil // a problem in the key itself is not inside the previous field
	}
	raw, err := s.str()
	if err != nil {
		return err
	}
	if depth := s.depth; depth <= MaxItemDepth {
		key := raw
		if bytes.IndexByte(raw, '\\') >= 0 {
			var k string
			_ = json.Unmarshal(s.data[keyAt:s.pos], &k) // valid: just scanned
			key = []byte(k)
		}
		if !s.keys[depth-1].add(key) {
			at := s.pos
			s.pos = keyAt
			s.itemProblem("duplicate key %q", truncate(string(key), 64))
			s.pos = at
		}
	}
	if s.depth == 1 {
		s.field = raw
	}
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		return s.syntax("want ':' after an object key")
	}
	s.pos++
	s.skipSpace()
	return nil
}

// str scans a string and returns its raw content (between the quotes).
func (s *jsonScanner) str() ([]byte, error) {
	s.pos++ // the opening quote
	from := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.data[from : s.pos-1], nil
		case c == '\\':
			if err := s.escape(); err != nil {
				return nil, err
			}
		case c < 0x20:
			return nil, s.syntax("control character %q in a string", rune(c))
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, n := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && n == 1 {
				s.itemProblem("invalid UTF-8")
			}
			s.pos += n
		}
	}
	return nil, s.syntax("unterminated string")
}

// escape scans a backslash escape; a \u escape of half a surrogate pair
// without its other half is an item problem (encoding/json would make it
// U+FFFD).
func (s *jsonScanner) escape() error {
	if s.pos+1 >= len(s.data) {
		return s.syntax("unterminated string")
	}
	switch s.data[s.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.pos += 2
		return nil
	case 'u':
	default:
		return s.syntax("invalid escape %q", s.data[s.pos:s.pos+2])
	}
	r, ok := s.hex4(s.pos + 2)
	if !ok {
		return s.syntax("invalid \\u escape")
	}
	switch {
	case 0xD800 <= r && r < 0xDC00:
		if lo, ok := s.hex4(s.pos + 8); ok && s.data[s.pos+6] == '\\' && s.data[s.pos+7] == 'u' && 0xDC00 <= lo && lo < 0xE000 {
			s.pos += 12
			return nil
		}
		s.itemProblem("unpaired surrogate escape \\u%04X", r)
	case 0xDC00 <= r && r < 0xE000:
		s.itemProblem("unpaired surrogate escape \\u%04X", r)
	}
	s.pos += 6
	return nil
}

// hex4 reads four hex digits at i (the package's hex4, over the
// scanner's data).
func (s *jsonScanner) hex4(i int) (rune, bool) { return hex4(s.data, i) }

// number scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case s.digits() == 0:
		return s.syntax("invalid number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.syntax("invalid number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.syntax("invalid number")
		}
	}
	return nil
}

func (s *jsonScanner) digits() int {
	from := s.pos
	for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos - from
}

func (s *jsonScanner) literal(word string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(word)) {
		return s.syntax("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// array scans a JSON array of items, calling item with each item's text
// and its item-level problem (nil for none). It returns a syntax error for
// a malformed array, after which item may have been called for some items.
func (s *jsonScanner) array(item func(i int, raw []byte, bad error)) error {
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != '[' {
		return s.syntax("want '['")
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return s.end()
	}
	for i := 0; ; i++ {
		if err := s.value(); err != nil {
			return err
		}
		item(i, s.data[s.start:s.pos], s.bad)
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.syntax("unexpected end of input")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return s.end()
		default:
			return s.syntax("invalid character %q after an item", rune(s.data[s.pos]))
		}
	}
}

// end checks that only white space follows.
func (s *jsonScanner) end() error {
	s.skipSpace()
	if s.pos < len(s.data) {
		return s.syntax("unexpected %q after the top-level value", rune(s.data[s.pos]))
	}
	return nil
}

// truncate cuts s to at most n bytes at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
