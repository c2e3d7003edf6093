package bus

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/segd/segd/rules"
)

// decodeBatchStd is DecodeBatch as it was before the single-pass decoder:
// the validating pre-scan (jsonScanner) and then encoding/json into
// wireItem structs. It is the reference the differential fuzz target and
// the benchmarks hold the new decoder to.
func decodeBatchStd(data []byte, defaultTime int64) (rules.Batch, error) {
	var b rules.Batch
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return b, fmt.Errorf("%w: the message is empty", ErrNotBatch)
	}
	switch trimmed[0] {
	case '[':
		sc := jsonScanner{data: trimmed, quiet: true}
		clean := true
		if err := sc.array(func(_ int, _ []byte, bad error) { clean = clean && bad == nil }); err != nil {
			return b, fmt.Errorf("%w: malformed JSON array: %v", ErrNotBatch, err)
		}
		if clean {
			var whole []wireItem
			dec := json.NewDecoder(bytes.NewReader(trimmed))
			dec.DisallowUnknownFields()
			if dec.Decode(&whole) == nil && !dec.More() {
				for i := range whole {
					if err := appendDecoded(&b, &whole[i], defaultTime); err != nil {
						countInvalid(&b, i, err)
					}
				}
				return b, nil
			}
		}
		sc.pos, sc.quiet = 0, false
		_ = sc.array(func(i int, raw []byte, bad error) {
			if bad != nil {
				countInvalid(&b, i, bad)
			} else {
				decodeItem(&b, i, raw, defaultTime)
			}
			sc.quiet = b.FirstInvalid != ""
		})
	case '{':
		var sc jsonScanner
		line := 0
		for rest := trimmed; len(rest) > 0; line++ {
			var raw []byte
			raw, rest, _ = bytes.Cut(rest, []byte{'\n'})
			raw = bytes.TrimSpace(raw)
			if len(raw) == 0 {
				continue
			}
			sc.data, sc.pos, sc.quiet = raw, 0, b.FirstInvalid != ""
			err := sc.value()
			if err == nil {
				err = sc.end()
			}
			switch {
			case err != nil:
				countInvalid(&b, line, fmt.Errorf("not a valid item: %v", err))
			case sc.bad != nil:
				countInvalid(&b, line, sc.bad)
			default:
				decodeItem(&b, line, raw, defaultTime)
			}
		}
	default:
		return b, fmt.Errorf("%w: want a JSON array or NDJSON objects, found %q at the start", ErrNotBatch, firstRune(trimmed))
	}
	return b, nil
}
