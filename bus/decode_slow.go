package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The slow way of BatchDecoder: an item the one pass leaves is decoded as
// the pre-scan (jsonScanner) and encoding/json decoded it before, which
// defines the results.

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
