package bus

import (
	"bytes"
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
// decoded again the way the pre-scan and encoding/json decoded it, which
// is therefore the definition of the results: FuzzDecodeBatchDiff holds
// the two to the same items and errors. The zero value is ready; a
// BatchDecoder is not safe for concurrent use.
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

// unsafeString views b as a string without copying: only for strings that
// do not outlive b's contents.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
