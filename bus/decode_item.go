package bus

import (
	"bytes"

	"github.com/segd/segd/rules"
)

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
