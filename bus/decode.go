package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"unsafe"

	"github.com/segd/segd/rules"
)

// DecodeOptions tune DecodeBatchWith.
type DecodeOptions struct {
	// DefaultTime is the time of events without one, in Unix milliseconds:
	// the message's stream timestamp, so that replays decode the same.
	DefaultTime int64
	// Keep, when set, picks the items this consumer wants by user id (a
	// partition keeps the users that hash to it). An item it refuses is
	// left out and is not counted as invalid; its props and profile are
	// not materialised. Keep is asked about each item (at least once) with
	// its user id; about an invalid item with the id its first "user"
	// member holds (the name in any ASCII case), or "" when that is
	// missing or not a valid id or the item is not well-formed JSON, so
	// that of several consumers each keeping its own users (and one of
	// them "") exactly one counts it. Keep must not retain the string it
	// is given (it may be a view of the message).
	Keep func(user string) bool
}

// DecodeBatchWith is DecodeBatch with options.
func DecodeBatchWith(data []byte, opts DecodeOptions) (rules.Batch, error) {
	d := decoders.Get().(*BatchDecoder)
	defer decoders.Put(d)
	return d.Decode(data, opts)
}

// decoders keeps BatchDecoders for DecodeBatch, whose buffers and string
// caches then serve from one message to the next. What a decoder keeps
// never changes what it decodes.
var decoders = sync.Pool{New: func() any { return new(BatchDecoder) }}

// BatchDecoder decodes batches like DecodeBatch in one pass over the
// message, validating while it builds the items, without encoding/json or
// reflection. It reuses its buffers from one batch to the next and
// caches the strings that repeat (event names, keys, users, short
// values), so that each is allocated once. An item the one pass does not
// handle (an unknown or escaped field name, a repeated field, a problem
// that needs describing, nesting past MaxItemDepth, malformed JSON) is
// decoded again
// the way the pre-scan and encoding/json decoded it, which is therefore
// the definition of the results: FuzzDecodeBatchDiff holds the two to the
// same items and errors. The zero value is ready; a BatchDecoder is not
// safe for concurrent use.
type BatchDecoder struct {
	data []byte // the message (or NDJSON line) being read
	pos  int
	opts DecodeOptions
	b    rules.Batch

	// strs and vals hold the strings and boxed string values decoded
	// last, by a hash of their text, so that those that repeat (event
	// names, keys, users, short values) are allocated once: a cache of
	// fixed size, whatever the batches hold. It is kept from one batch to
	// the next (strings are immutable, so sharing one changes nothing).
	strs *[cacheSlots]string
	vals *[cacheSlots]boxed
	// pairs and elems are the stacks of the objects and arrays being
	// built: a container's members are gathered here, then copied into a
	// map or slice of the exact size.
	pairs []pair
	elems []any
	buf   []byte // unescaped string text
	line  bool   // data is one NDJSON line
	sc    jsonScanner
}

type pair struct {
	key string
	val any
}

// cacheSlots is the size of the string caches; strings longer than
// maxCached bytes are not cached.
const (
	cacheSlots = 1024
	maxCached  = 256
)

type boxed struct {
	s string
	v any
}

// Decode decodes one ingest message; see DecodeBatch and DecodeOptions.
func (d *BatchDecoder) Decode(data []byte, opts DecodeOptions) (rules.Batch, error) {
	d.opts, d.b = opts, rules.Batch{}
	defer d.release()
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return d.b, fmt.Errorf("%w: the message is empty", ErrNotBatch)
	}
	switch trimmed[0] {
	case '[':
		d.line = false
		if err := d.array(trimmed); err != nil {
			return rules.Batch{}, fmt.Errorf("%w: malformed JSON array: %v", ErrNotBatch, err)
		}
	case '{':
		d.line = true
		line := 0
		for rest := trimmed; len(rest) > 0; line++ {
			var raw []byte
			raw, rest, _ = bytes.Cut(rest, []byte{'\n'})
			raw = bytes.TrimSpace(raw)
			if len(raw) == 0 {
				continue
			}
			d.data, d.pos = raw, 0
			if !d.item(line) {
				d.slowLine(line, raw)
			}
		}
	default:
		return d.b, fmt.Errorf("%w: want a JSON array or NDJSON objects, found %q at the start", ErrNotBatch, firstRune(trimmed))
	}
	return d.b, nil
}

// release drops what the decoder holds of the last message, and its
// stacks if an outsize message grew them.
func (d *BatchDecoder) release() {
	d.data, d.opts.Keep, d.b = nil, nil, rules.Batch{}
	clear(d.pairs)
	clear(d.elems)
	d.pairs, d.elems = d.pairs[:0], d.elems[:0]
	if cap(d.pairs) > 4*largeObject {
		d.pairs = nil
	}
	if cap(d.elems) > 4096 {
		d.elems = nil
	}
	if cap(d.buf) > 64<<10 {
		d.buf = nil
	}
	d.sc = jsonScanner{}
}

// array decodes a JSON array of items; it returns the syntax error of a
// malformed one, as jsonScanner.array words it.
func (d *BatchDecoder) array(data []byte) error {
	d.data, d.pos = data, 1
	sc := jsonScanner{data: data} // words the syntax errors between items
	d.skipSpace()
	if d.pos < len(data) && data[d.pos] == ']' {
		sc.pos = d.pos + 1
		return sc.end()
	}
	for i := 0; ; i++ {
		d.skipSpace()
		start := d.pos
		if !d.item(i) {
			end, err := d.slowItem(i, start)
			if err != nil {
				return err
			}
			d.pos = end
		}
		d.skipSpace()
		sc.pos = d.pos
		if d.pos >= len(data) {
			return sc.syntax("unexpected end of input")
		}
		switch data[d.pos] {
		case ',':
			d.pos++
		case ']':
			sc.pos = d.pos + 1
			return sc.end()
		default:
			return sc.syntax("invalid character %q after an item", rune(data[d.pos]))
		}
	}
}

// The five fields of an item, as bits.
const (
	fieldUser = 1 << iota
	fieldEvent
	fieldTime
	fieldProps
	fieldProfile
)

// item decodes the item at d.pos in one pass and appends it to d.b, or
// counts it as invalid, or leaves it out when Keep refuses it, leaving
// d.pos after it. It returns false, with d.b unchanged, when the item must
// be decoded the slow way instead (slowItem, slowLine).
func (d *BatchDecoder) item(i int) bool {
	data := d.data
	start := d.pos
	if d.pos >= len(data) || data[d.pos] != '{' {
		return false
	}
	if len(d.pairs)+len(d.elems) > 0 { // left by an item that went the slow way
		clear(d.pairs)
		clear(d.elems)
		d.pairs, d.elems = d.pairs[:0], d.elems[:0]
	}
	d.pos++
	var (
		seen     uint8
		invalid  bool // a problem that makes the item invalid whatever follows
		decided  bool // Keep has been asked
		keep     = true
		user     string
		userOK   bool
		name     string
		t        = d.opts.DefaultTime
		timeBad  bool
		props    map[string]any
		profile  map[string]any
		mat      = true // materialise values: the item may be appended
		nameSeen bool
		objects  uint8 // fieldProps and fieldProfile when not null
	)
	d.skipSpace()
	if d.pos < len(data) && data[d.pos] == '}' {
		d.pos++
		invalid = true // no user
	} else {
		for {
			key, ok := d.fieldName()
			if !ok {
				return false
			}
			d.skipSpace()
			if d.pos >= len(data) || data[d.pos] != ':' {
				return false
			}
			d.pos++
			d.skipSpace()
			if seen&key != 0 {
				return false // a duplicate: invalid, described the slow way
			}
			seen |= key
			switch key {
			case fieldUser:
				u, ok, valid := d.userValue()
				if !ok {
					return false
				}
				if valid {
					user, userOK = u, true
				} else {
					invalid = true
				}
				if d.opts.Keep != nil {
					decided = true
					keep = d.opts.Keep(u) // u is "" for an invalid id
				}
				if keep && userOK {
					user = d.intern(u)
				}
			case fieldEvent:
				switch {
				case d.pos < len(data) && data[d.pos] == '"':
					s, ok := d.str()
					if !ok {
						return false
					}
					if len(s) > 0 {
						nameSeen = true
						if mat {
							name = d.intern(unsafeString(s))
						}
						if len(s) > MaxNameBytes || s[0] == '@' {
							invalid = true
						}
					}
				case d.literal("null"):
				default:
					invalid = true // not a string
					if !d.skip(1) {
						return false
					}
				}
			case fieldTime:
				switch ms, ok, valid := d.timeValue(); {
				case !ok:
					return false
				case !valid:
					timeBad = true
				default:
					t = ms
				}
			case fieldProps, fieldProfile:
				var m map[string]any
				switch {
				case d.pos < len(data) && data[d.pos] == '{':
					objects |= key
					if mat {
						var ok bool
						if m, ok = d.object(2); !ok {
							return false
						}
					} else if !d.skip(1) {
						return false
					}
				case d.literal("null"):
				default:
					invalid = true // not an object
					if !d.skip(1) {
						return false
					}
				}
				if key == fieldProps {
					props = m
				} else {
					profile = m
				}
			}
			if invalid && d.b.FirstInvalid == "" && keep {
				return false // the slow way describes it
			}
			mat = keep && !invalid
			d.skipSpace()
			if d.pos >= len(data) {
				return false
			}
			if data[d.pos] == ',' {
				d.pos++
				d.skipSpace()
				continue
			}
			if data[d.pos] != '}' {
				return false
			}
			d.pos++
			break
		}
	}
	// What appendDecoded checks, in any order: only whether the item is
	// valid matters here.
	if !userOK || timeBad || (!nameSeen && objects&fieldProfile == 0) || (!nameSeen && objects&fieldProps != 0) {
		invalid = true
	}
	if d.line && d.pos != len(data) {
		return false // something after the item on its line
	}
	if !decided && d.opts.Keep != nil {
		keep = d.opts.Keep("") // no "user" member
	}
	if !keep {
		return true
	}
	if invalid {
		if d.b.FirstInvalid == "" {
			d.pos = start
			return false
		}
		d.b.Invalid++
		return true
	}
	if nameSeen {
		d.b.Events = append(d.b.Events, rules.Event{User: user, Name: name, Time: t, Props: props})
	}
	if profile != nil {
		d.b.Profiles = append(d.b.Profiles, rules.ProfileUpdate{User: user, Attrs: profile})
	}
	return true
}

// fieldName reads an item's member name and returns its field bit, or
// false for anything but the five names in ASCII letters of any case, as
// encoding/json matches them (other spellings it matches, such as the
// Kelvin sign for a k or an escaped letter, and unknown names, which
// make the item invalid, are left to the slow way).
func (d *BatchDecoder) fieldName() (uint8, bool) {
	data := d.data
	if d.pos >= len(data) || data[d.pos] != '"' {
		return 0, false
	}
	end := bytes.IndexByte(data[d.pos+1:], '"')
	if end < 0 {
		return 0, false
	}
	name := data[d.pos+1 : d.pos+1+end]
	d.pos += end + 2
	f := fieldOf(name)
	return f, f != 0
}

// fieldOf is the field bit of a member name (raw, as in the message) in
// ASCII letters of any case, or 0.
func fieldOf(name []byte) uint8 {
	if f := lowerFieldOf(name); f != 0 {
		return f
	}
	var lower [len("profile")]byte
	if len(name) > len(lower) {
		return 0
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return lowerFieldOf(lower[:len(name)])
}

// lowerFieldOf is the field bit of a member name in lower case, or 0.
func lowerFieldOf(name []byte) uint8 {
	switch string(name) {
	case "user":
		return fieldUser
	case "event":
		return fieldEvent
	case "time":
		return fieldTime
	case "props":
		return fieldProps
	case "profile":
		return fieldProfile
	}
	return 0
}

// userValue reads the value of "user": a non-empty string of at most
// MaxUserBytes or an integer that fits int64, kept as its text. It returns
// the id (a view of the message or of d.buf, "" if not valid), ok false
// when the item must go the slow way, and whether the id is valid.
func (d *BatchDecoder) userValue() (string, bool, bool) {
	data := d.data
	if d.pos >= len(data) {
		return "", false, false
	}
	switch c := data[d.pos]; {
	case c == '"':
		s, ok := d.str()
		if !ok {
			return "", false, false
		}
		if len(s) == 0 || len(s) > MaxUserBytes {
			return "", true, false
		}
		return unsafeString(s), true, true
	case c == '-' || ('0' <= c && c <= '9'):
		from := d.pos
		if !d.numberSyntax() {
			return "", false, false
		}
		raw := data[from:d.pos]
		if !isInt64(raw) {
			return "", true, false
		}
		return unsafeString(raw), true, true
	}
	return "", d.skip(1), false
}

// timeValue reads the value of "time" as decodeTime does: null for the
// default, an RFC 3339 string, or integer Unix milliseconds (a float
// without a fraction too).
func (d *BatchDecoder) timeValue() (ms int64, ok, valid bool) {
	data := d.data
	if d.pos >= len(data) {
		return 0, false, false
	}
	switch c := data[d.pos]; {
	case c == '"':
		s, ok := d.str()
		if !ok {
			return 0, false, false
		}
		ms, valid := parseTime(s)
		return ms, true, valid
	case c == '-' || ('0' <= c && c <= '9'):
		from := d.pos
		if !d.numberSyntax() {
			return 0, false, false
		}
		raw := data[from:d.pos]
		if ms, ok := smallInt(raw); ok {
			return ms, true, true
		}
		ms, err := decodeTime(raw, 0)
		return ms, true, err == nil
	case c == 'n':
		if d.literal("null") {
			return d.opts.DefaultTime, true, true
		}
		return 0, false, false
	}
	return 0, d.skip(1), false
}

// slowItem decodes array item i at start as the pre-scan and encoding/json
// did and returns the position after it, or the syntax error there.
func (d *BatchDecoder) slowItem(i, start int) (int, error) {
	sc := d.scanner(d.data, start)
	if err := sc.value(); err != nil {
		return 0, err
	}
	d.slowDecode(i, d.data[sc.start:sc.pos], sc.bad)
	return sc.pos, nil
}

// slowLine decodes NDJSON line i as the pre-scan and encoding/json did.
func (d *BatchDecoder) slowLine(i int, raw []byte) {
	sc := d.scanner(raw, 0)
	err := sc.value()
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		if d.keep("") {
			countInvalid(&d.b, i, fmt.Errorf("not a valid item: %v", err))
		}
		return
	}
	d.slowDecode(i, raw, sc.bad)
}

// slowDecode decodes well-formed item i with encoding/json, given the
// scanner's verdict bad, and appends it or counts it as invalid.
func (d *BatchDecoder) slowDecode(i int, raw []byte, bad error) {
	err := bad
	if err == nil {
		var it wireItem
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err = dec.Decode(&it); err != nil {
			err = fmt.Errorf("not a valid item: %v", err)
		} else {
			var user string
			var t int64
			if user, t, err = checkItem(&it, d.opts.DefaultTime); err == nil {
				if d.keep(user) {
					appendItem(&d.b, &it, user, t)
				}
				return
			}
		}
	}
	if d.opts.Keep == nil || d.opts.Keep(attributedUser(raw)) {
		countInvalid(&d.b, i, err)
	}
}

// scanner returns the decoder's jsonScanner set to read data from pos,
// describing problems until the first invalid item is described.
func (d *BatchDecoder) scanner(data []byte, pos int) *jsonScanner {
	d.sc.data, d.sc.pos, d.sc.quiet = data, pos, d.b.FirstInvalid != ""
	return &d.sc
}

func (d *BatchDecoder) keep(user string) bool {
	return d.opts.Keep == nil || d.opts.Keep(user)
}

// attributedUser is the user an invalid item is attributed to, for Keep:
// the value of its first member named "user" (in ASCII letters of any
// case, as fieldName reads it) if that is a valid id, else "". raw is
// well-formed JSON.
func attributedUser(raw []byte) string {
	if len(raw) == 0 || raw[0] != '{' {
		return ""
	}
	sc := jsonScanner{data: raw, pos: 1, quiet: true}
	for {
		sc.skipSpace()
		if sc.pos >= len(raw) || raw[sc.pos] != '"' {
			return "" // the end of the object
		}
		key, err := sc.str()
		if err != nil {
			return ""
		}
		sc.skipSpace()
		sc.pos++ // ':'
		if err := sc.value(); err != nil {
			return ""
		}
		if fieldOf(key) == fieldUser {
			if sc.bad != nil {
				return ""
			}
			u, err := decodeUser(raw[sc.start:sc.pos])
			if err != nil {
				return ""
			}
			return u
		}
		sc.skipSpace()
		sc.pos++ // ','
	}
}

// unsafeString views b as a string without copying: only for strings that
// do not outlive b's contents.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
