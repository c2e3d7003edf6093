package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// ErrNotBatch reports an ingest message that is not a batch at all
// (ingest.ErrNotBatch).
var ErrNotBatch = ingest.ErrNotBatch

// wireItem is one element of a batch on the wire: an event, a profile update,
// or both for the same user.
type wireItem struct {
	User    json.RawMessage `json:"user"`
	Event   string          `json:"event"`
	Time    json.RawMessage `json:"time"`
	Props   map[string]any  `json:"props"`
	Profile map[string]any  `json:"profile"`
}

// Limits of an item, beyond those of the message (docs/events.md, "Limits").
// An item past one of them is invalid: skipped and counted, the rest of
// its batch applied.
const (
	// MaxItemDepth bounds the nesting of objects and arrays in an item, the
	// item itself being level 1 and its props level 2.
	MaxItemDepth = 64
	// MaxUserBytes bounds a user id (a string, or an integer's text).
	MaxUserBytes = 1024
	// MaxNameBytes bounds an event name and the keys of props and profile.
	MaxNameBytes = 256
)

// DecodeBatch decodes one ingest message: a JSON array of items or
// newline-delimited JSON objects (NDJSON). An item without a time takes
// defaultTime (the message's stream timestamp, in Unix milliseconds), so that
// replays decode to the same events.
//
// Invalid items are skipped and counted in the batch; the error is non-nil
// (and wraps ErrNotBatch) only when the message as a whole is not a batch.
// Besides what the fields require, an item is invalid if it is nested
// deeper than MaxItemDepth, holds invalid UTF-8 or an unpaired surrogate
// escape anywhere (encoding/json would turn either into U+FFFD, making
// different ids one), repeats a key in an object, or exceeds MaxUserBytes
// or MaxNameBytes.
//
// It decodes in one pass (BatchDecoder); DecodeBatchWith takes options.
func DecodeBatch(data []byte, defaultTime int64) (rules.Batch, error) {
	return DecodeBatchWith(data, DecodeOptions{DefaultTime: defaultTime})
}

func firstRune(b []byte) string {
	r := []rune(string(b[:min(len(b), 8)]))
	return string(r[:1])
}

// decodeItem appends item i to b, or counts it as invalid.
func decodeItem(b *rules.Batch, i int, raw []byte, defaultTime int64) {
	var it wireItem
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(&it)
	if err != nil {
		err = fmt.Errorf("not a valid item: %v", err)
	} else {
		err = appendDecoded(b, &it, defaultTime)
	}
	if err != nil {
		countInvalid(b, i, err)
	}
}

func countInvalid(b *rules.Batch, i int, err error) {
	b.Invalid++
	if b.FirstInvalid == "" {
		b.FirstInvalid = fmt.Sprintf("item %d: %v", i, err)
	}
}

// appendDecoded validates a decoded item and appends it to b.
func appendDecoded(b *rules.Batch, it *wireItem, defaultTime int64) error {
	user, t, err := checkItem(it, defaultTime)
	if err == nil {
		appendItem(b, it, user, t)
	}
	return err
}

// checkItem validates a decoded item and returns its user and time.
func checkItem(it *wireItem, defaultTime int64) (user string, t int64, err error) {
	user, err = decodeUser(it.User)
	if err != nil {
		return "", 0, err
	}
	if it.Event == "" && it.Profile == nil {
		return "", 0, errors.New(`needs "event" or "profile"`)
	}
	if len(it.Event) > MaxNameBytes {
		return "", 0, fmt.Errorf(`"event": %d bytes, longer than the limit of %d`, len(it.Event), MaxNameBytes)
	}
	if err := checkKeys("props", it.Props); err != nil {
		return "", 0, err
	}
	if err := checkKeys("profile", it.Profile); err != nil {
		return "", 0, err
	}
	if strings.HasPrefix(it.Event, "@") {
		return "", 0, fmt.Errorf(`"event": %q: names starting with "@" are reserved for the named predicates of rule files`, it.Event)
	}
	if it.Event == "" && it.Props != nil {
		return "", 0, errors.New(`"props" belong to an event, and this item has no "event" (a profile update carries "profile")`)
	}
	// A profile update may say when it happened; it must still parse.
	if t, err = decodeTime(it.Time, defaultTime); err != nil {
		return "", 0, err
	}
	return user, t, nil
}

// appendItem appends a checked item to b.
func appendItem(b *rules.Batch, it *wireItem, user string, t int64) {
	if it.Event != "" {
		b.Events = append(b.Events, rules.Event{User: user, Name: it.Event, Time: t, Props: it.Props})
	}
	if it.Profile != nil {
		b.Profiles = append(b.Profiles, rules.ProfileUpdate{User: user, Attrs: it.Profile})
	}
}

// checkKeys checks the keys of props or profile against MaxNameBytes. Of
// several long keys it names the least, so that the error does not depend
// on map order.
func checkKeys(field string, m map[string]any) error {
	long := ""
	for k := range m {
		if len(k) > MaxNameBytes && (long == "" || k < long) {
			long = k
		}
	}
	if long == "" {
		return nil
	}
	return fmt.Errorf("%q: key %q: %d bytes, longer than the limit of %d", field, truncate(long, 32), len(long), MaxNameBytes)
}

// decodeUser accepts a non-empty string or an integer, since many producers
// keep numeric user ids.
func decodeUser(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New(`"user" is missing`)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf(`"user": %v`, err)
		}
		if s == "" {
			return "", errors.New(`"user" is empty`)
		}
		if len(s) > MaxUserBytes {
			return "", fmt.Errorf(`"user": %d bytes, longer than the limit of %d`, len(s), MaxUserBytes)
		}
		return s, nil
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err != nil {
		return "", fmt.Errorf(`"user": want a string or an integer, got %s`, raw)
	}
	return string(raw), nil
}

// decodeTime accepts an RFC 3339 string or Unix milliseconds.
func decodeTime(raw json.RawMessage, defaultTime int64) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return defaultTime, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf(`"time": %v`, err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf(`"time": cannot parse %q as RFC 3339 (e.g. 2026-11-28T10:15:00+08:00)`, s)
		}
		return t.UnixMilli(), nil
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(raw), 64)
		if ferr != nil || f != float64(int64(f)) {
			return 0, fmt.Errorf(`"time": want RFC 3339 or integer Unix milliseconds, got %s`, raw)
		}
		ms = int64(f)
	}
	return ms, nil
}
