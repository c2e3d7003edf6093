package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segd/segd/rules"
)

const defaultTime = int64(1_764_000_000_000) // the stream timestamp stand-in

func TestDecodeBatch(t *testing.T) {
	t.Parallel()
	ms := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	tests := []struct {
		name     string
		in       string
		events   []rules.Event
		profiles []rules.ProfileUpdate
		invalid  int
		// firstInvalid lists substrings the first error must contain.
		firstInvalid []string
	}{
		{
			name: "JSON array",
			in:   `[{"user":"u1","event":"view","time":1700000000000,"props":{"page":"/"}},{"user":"u2","event":"buy"}]`,
			events: []rules.Event{
				{User: "u1", Name: "view", Time: 1700000000000, Props: map[string]any{"page": "/"}},
				{User: "u2", Name: "buy", Time: defaultTime},
			},
		},
		{
			name: "NDJSON with blank lines and CRLF",
			in:   "{\"user\":\"u1\",\"event\":\"a\",\"time\":5}\r\n\n  {\"user\":\"u2\",\"event\":\"b\",\"time\":6}\n",
			events: []rules.Event{
				{User: "u1", Name: "a", Time: 5},
				{User: "u2", Name: "b", Time: 6},
			},
		},
		{
			name: "RFC 3339 with offsets and fractions",
			in:   `[{"user":"u","event":"e","time":"2026-11-28T10:15:00+08:00"},{"user":"u","event":"e","time":"2026-11-28T02:15:00.250Z"},{"user":"u","event":"e","time":"2026-11-27T21:15:00-05:00"}]`,
			events: []rules.Event{
				{User: "u", Name: "e", Time: ms("2026-11-28T02:15:00Z")},
				{User: "u", Name: "e", Time: ms("2026-11-28T02:15:00.25Z")},
				{User: "u", Name: "e", Time: ms("2026-11-28T02:15:00Z")},
			},
		},
		{
			name:   "unix milliseconds as a float without fraction",
			in:     `[{"user":"u","event":"e","time":1.7e12}]`,
			events: []rules.Event{{User: "u", Name: "e", Time: 1_700_000_000_000}},
		},
		{
			name:   "missing and null time take the default",
			in:     `[{"user":"u","event":"e"},{"user":"u","event":"e","time":null}]`,
			events: []rules.Event{{User: "u", Name: "e", Time: defaultTime}, {User: "u", Name: "e", Time: defaultTime}},
		},
		{
			name:   "numeric user id",
			in:     `[{"user":12345,"event":"e","time":1}]`,
			events: []rules.Event{{User: "12345", Name: "e", Time: 1}},
		},
		{
			name:     "profile only, and event plus profile",
			in:       `[{"user":"u1","profile":{"plan":"pro"}},{"user":"u2","event":"e","time":1,"profile":{"vip":true,"old":null}}]`,
			events:   []rules.Event{{User: "u2", Name: "e", Time: 1}},
			profiles: []rules.ProfileUpdate{{User: "u1", Attrs: map[string]any{"plan": "pro"}}, {User: "u2", Attrs: map[string]any{"vip": true, "old": nil}}},
		},
		{
			name:         "bad items are counted, the first is described",
			in:           `[{"user":"u","event":"ok","time":1},{"user":"u","event":"e","time":"yesterday"},{"event":"e"},{"user":"","event":"e"}]`,
			events:       []rules.Event{{User: "u", Name: "ok", Time: 1}},
			invalid:      3,
			firstInvalid: []string{"item 1", `"time"`, "yesterday"},
		},
		{
			name:         "missing user names the field",
			in:           `[{"event":"e"}]`,
			invalid:      1,
			firstInvalid: []string{"item 0", `"user" is missing`},
		},
		{
			name: "field names in any case, as encoding/json matches them; the last of two spellings counts",
			in:   `[{"User":"u1","EVENT":"view","Time":5,"PROPS":{"Page":"/"}},{"USER":"u2","Profile":{"a":1}},{"user":"u3","User":"u4","event":"e","time":6}]`,
			events: []rules.Event{
				{User: "u1", Name: "view", Time: 5, Props: map[string]any{"Page": "/"}},
				{User: "u4", Name: "e", Time: 6},
			},
			profiles: []rules.ProfileUpdate{{User: "u2", Attrs: map[string]any{"a": 1.0}}},
		},
		{
			name:         "unknown field is rejected",
			in:           `[{"user":"u","event":"e","tiem":1}]`,
			invalid:      1,
			firstInvalid: []string{"item 0", "tiem"},
		},
		{
			name:         "fractional and non-integer user ids",
			in:           `[{"user":1.5,"event":"e"},{"user":true,"event":"e"}]`,
			invalid:      2,
			firstInvalid: []string{"item 0", `"user"`},
		},
		{
			name:         "neither event nor profile",
			in:           `[{"user":"u"}]`,
			invalid:      1,
			firstInvalid: []string{`needs "event" or "profile"`},
		},
		{
			name:         "props without an event",
			in:           `[{"user":"u","props":{"a":1},"profile":{"b":2}}]`,
			invalid:      1,
			firstInvalid: []string{`"props" belong to an event`},
		},
		{
			name:         "event names starting with @ are reserved",
			in:           `[{"user":"u","event":"@big"}]`,
			invalid:      1,
			firstInvalid: []string{`names starting with "@" are reserved`},
		},
		{
			name:     "a profile update may carry its time",
			in:       `[{"user":"u","time":"2026-11-28T10:15:00+08:00","profile":{"b":2}}]`,
			profiles: []rules.ProfileUpdate{{User: "u", Attrs: map[string]any{"b": 2.0}}},
		},
		{
			name:         "a profile update's time must parse",
			in:           `[{"user":"u","time":"noon","profile":{"b":2}}]`,
			invalid:      1,
			firstInvalid: []string{`"time": cannot parse "noon"`},
		},
		{
			name:         "NDJSON line numbers count from zero",
			in:           "{\"user\":\"u\",\"event\":\"e\",\"time\":1}\n{\"user\":\"u\",\"event\":\"e\",\"time\":1.5}\n",
			events:       []rules.Event{{User: "u", Name: "e", Time: 1}},
			invalid:      1,
			firstInvalid: []string{"item 1", `"time"`},
		},
		{
			name:         "non-object array element",
			in:           `[42]`,
			invalid:      1,
			firstInvalid: []string{"item 0", "not a valid item"},
		},
		{name: "empty array", in: `[]`},
		{
			name:         "an item nested 20,000 levels deep is skipped, the others applied",
			in:           `[{"user":"a","event":"e","time":1},{"user":"b","event":"e","time":1,"props":{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}},{"user":"c","event":"e","time":1}]`,
			events:       []rules.Event{{User: "a", Name: "e", Time: 1}, {User: "c", Name: "e", Time: 1}},
			invalid:      1,
			firstInvalid: []string{"item 1", `"props"`, "nested deeper than 64 levels"},
		},
		{
			name:         "the same in NDJSON",
			in:           "{\"user\":\"a\",\"event\":\"e\",\"time\":1}\n{\"user\":\"b\",\"event\":\"e\",\"props\":{\"x\":" + strings.Repeat(`{"y":`, 20000) + "1" + strings.Repeat("}", 20000) + "}}\n",
			events:       []rules.Event{{User: "a", Name: "e", Time: 1}},
			invalid:      1,
			firstInvalid: []string{"item 1", "nested deeper than 64 levels"},
		},
		{
			name:         "objects and arrays alternating 141 levels deep",
			in:           "[" + strings.Repeat(`{"a":[`, 70) + "1" + strings.Repeat("]}", 70) + `,{"user":"u","event":"e","time":1}]`,
			events:       []rules.Event{{User: "u", Name: "e", Time: 1}},
			invalid:      1,
			firstInvalid: []string{"item 0", "nested deeper than 64 levels"},
		},
		{
			name:   "64 levels are allowed",
			in:     `[{"user":"a","event":"e","time":1,"props":{"x":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}]`,
			events: []rules.Event{{User: "a", Name: "e", Time: 1, Props: map[string]any{"x": nest(61)}}},
		},
		{
			name:         "65 are not",
			in:           `[{"user":"a","event":"e","time":1,"props":{"x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}]`,
			invalid:      1,
			firstInvalid: []string{"nested deeper than 64 levels"},
		},
		{
			name:         "invalid UTF-8 in user ids does not merge two users",
			in:           "[{\"user\":\"id\xff\",\"event\":\"e\",\"time\":1},{\"user\":\"id\xfe\",\"event\":\"e\",\"time\":1},{\"user\":\"ok\",\"event\":\"e\",\"time\":1}]",
			events:       []rules.Event{{User: "ok", Name: "e", Time: 1}},
			invalid:      2,
			firstInvalid: []string{"item 0", `"user"`, "invalid UTF-8 at byte 11 of the item"},
		},
		{
			name:         "unpaired surrogate escapes in user ids",
			in:           `[{"user":"x\ud800","event":"e","time":1},{"user":"x\udfff","event":"e","time":1},{"user":"x\ud83d\ude00","event":"e","time":1}]`,
			events:       []rules.Event{{User: "x\U0001F600", Name: "e", Time: 1}},
			invalid:      2,
			firstInvalid: []string{"item 0", `"user"`, `unpaired surrogate escape \uD800`},
		},
		{
			name:   "a literal U+FFFD is an ordinary character",
			in:     `[{"user":"x\ufffd","event":"e","time":1},{"user":"y�","event":"e","time":1}]`,
			events: []rules.Event{{User: "x\uFFFD", Name: "e", Time: 1}, {User: "y\uFFFD", Name: "e", Time: 1}},
		},
		{
			name:         "invalid UTF-8 in an event name, a property key, a profile key and a value",
			in:           "{\"user\":\"u\",\"event\":\"e\xc3\",\"time\":1}\n{\"user\":\"u\",\"event\":\"e\",\"props\":{\"k\xc3\":1}}\n{\"user\":\"u\",\"profile\":{\"\xed\xa0\x80\":1}}\n{\"user\":\"u\",\"event\":\"e\",\"props\":{\"k\":\"v\x80\"}}\n",
			invalid:      4,
			firstInvalid: []string{"item 0", `"event": invalid UTF-8`},
		},
		{
			name:         "duplicate keys: the item is ambiguous",
			in:           `[{"user":"a","user":"b","event":"e"},{"user":"a","event":"e","props":{"k":1,"k":2}},{"user":"a","event":"e","props":{"k":1,"\u006b":2}},{"user":"a","event":"e","time":1,"props":{"k":{"k":1}}}]`,
			events:       []rules.Event{{User: "a", Name: "e", Time: 1, Props: map[string]any{"k": map[string]any{"k": 1.0}}}},
			invalid:      3,
			firstInvalid: []string{"item 0", `duplicate key "user"`},
		},
		{
			name:         "duplicate keys among many",
			in:           `[{"user":"a","event":"e","props":{` + manyKeys(40) + `,"k7":0}}]`,
			invalid:      1,
			firstInvalid: []string{`"props": duplicate key "k7"`},
		},
		{
			name:         "a user id over 1024 bytes",
			in:           `[{"user":"` + strings.Repeat("u", 1025) + `","event":"e","time":1},{"user":"` + strings.Repeat("u", 1024) + `","event":"e","time":1}]`,
			events:       []rules.Event{{User: strings.Repeat("u", 1024), Name: "e", Time: 1}},
			invalid:      1,
			firstInvalid: []string{"item 0", `"user": 1025 bytes, longer than the limit of 1024`},
		},
		{
			name:         "an event name or key over 256 bytes",
			in:           `[{"user":"u","event":"` + strings.Repeat("e", 257) + `"},{"user":"u","event":"e","props":{"` + strings.Repeat("k", 257) + `":1}},{"user":"u","profile":{"` + strings.Repeat("k", 257) + `":1}}]`,
			invalid:      3,
			firstInvalid: []string{"item 0", `"event": 257 bytes, longer than the limit of 256`},
		},
		{
			name:         "a number beyond float64 fails its item only",
			in:           `[{"user":"u","event":"e","time":1,"props":{"n":1e400}},{"user":"u","event":"f","time":1,"props":{"n":1e300}}]`,
			events:       []rules.Event{{User: "u", Name: "f", Time: 1, Props: map[string]any{"n": 1e300}}},
			invalid:      1,
			firstInvalid: []string{"item 0", "1e400"},
		},
		{
			name:         "a huge integer user id or time",
			in:           `[{"user":123456789012345678901234567890,"event":"e"},{"user":"u","event":"e","time":1e300},{"user":"u","event":"e","time":99999999999999999999}]`,
			invalid:      3,
			firstInvalid: []string{"item 0", `"user": want a string or an integer`},
		},
		{
			name:         "an NDJSON line with something after its object",
			in:           "{\"user\":\"u\",\"event\":\"e\",\"time\":1} {\"user\":\"v\"}\n{\"user\":\"w\",\"event\":\"e\",\"time\":1}",
			events:       []rules.Event{{User: "w", Name: "e", Time: 1}},
			invalid:      1,
			firstInvalid: []string{"item 0", "not a valid item", "after the top-level value"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := DecodeBatch([]byte(tc.in), defaultTime)
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if got, want := jsonOf(t, b.Events), jsonOf(t, tc.events); got != want {
				t.Errorf("events\n got %s\nwant %s", got, want)
			}
			if got, want := jsonOf(t, b.Profiles), jsonOf(t, tc.profiles); got != want {
				t.Errorf("profiles\n got %s\nwant %s", got, want)
			}
			if b.Invalid != tc.invalid {
				t.Errorf("Invalid = %d, want %d (first: %s)", b.Invalid, tc.invalid, b.FirstInvalid)
			}
			for _, want := range tc.firstInvalid {
				if !strings.Contains(b.FirstInvalid, want) {
					t.Errorf("FirstInvalid = %q, want it to contain %q", b.FirstInvalid, want)
				}
			}
			if tc.invalid == 0 && b.FirstInvalid != "" {
				t.Errorf("FirstInvalid = %q for a clean batch", b.FirstInvalid)
			}
		})
	}
}

// nest returns n nested empty arrays as encoding/json decodes them.
func nest(n int) any {
	var v any = []any{}
	for range n {
		v = []any{v}
	}
	return v
}

// manyKeys returns n distinct "kI":I members of an object.
func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":%d`, i, i)
	}
	return strings.Join(parts, ",")
}

// jsonOf renders v for comparison, treating nil and empty slices alike.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); s != "null" {
		return s
	}
	return "[]"
}

func TestDecodeBatchNotABatch(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		"   \n\t",
		"hello",
		`"a string"`,
		"42",
		`[{"user":"u","event":"e"}`, // truncated array
		`[1,2,`,
		"\x00\x01\x02",
		"\xff\xfe garbage",
		`[{"user":"u"} {"user":"v"}]`,        // no comma
		`[{"user":"u",}]`,                    // trailing comma
		`[{"user":"u"}] x`,                   // after the array
		`[{"user":"u\x"}]`,                   // bad escape
		"[\"a\x01\"]",                        // control character
		`[01]`,                               // number syntax
		`[tru]`,                              // literal
		strings.Repeat("[", 1<<20),           // a megabyte of '['
		"[" + strings.Repeat(`{"a":`, 30000), // deep and cut
		`[{"a":[}]`,                          // mismatched brackets
		"[" + strings.Repeat(`{"a":[`, 70) + "1" + strings.Repeat("}]", 70) + "]", // mismatched, deep
		"[" + strings.Repeat(`{"a":[`, 70) + "1" + strings.Repeat("]}", 70),       // unclosed array
	} {
		b, err := DecodeBatch([]byte(in), defaultTime)
		if !errors.Is(err, ErrNotBatch) {
			t.Errorf("DecodeBatch(%q) error = %v, want ErrNotBatch", in, err)
		}
		if len(b.Events)+len(b.Profiles) != 0 {
			t.Errorf("DecodeBatch(%q) returned items with an error", in)
		}
	}
}

// FuzzDecodeBatch checks that no input panics, that counts add up, that
// what is accepted respects the item limits and was not altered (no user id
// or event name holds a U+FFFD the input did not hold), and that the
// scanner agrees with encoding/json on what is well-formed.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`[{"user":"u","event":"e","time":"2026-11-28T10:15:00+08:00","props":{"a":[1,{"b":null}]}}]`))
	f.Add([]byte("{\"user\":1,\"profile\":{}}\n{\"x\":1}"))
	f.Add([]byte(`[{"user":"u","event":"e","time":1e400}]`))
	f.Add([]byte(`[{"user":"a","event":"e","props":{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}},{"user":"b","event":"e"}]`))
	f.Add([]byte("[{\"user\":\"id\xff\",\"event\":\"e\"},{\"user\":\"x\\ud800\",\"event\":\"e\"}]"))
	f.Add([]byte(`[{"user":"a","user":"b","event":"e","props":{"k":1,"\u006b":2}}]`))
	f.Add([]byte(`[{"user":"x\ud83d\ude00","event":"\ufffd","profile":{"k":"v"}}]`))
	f.Add([]byte("{\"user\":\"u\",\"event\":\"e\"} tail\n{\"user\":\"v\",\"event\":\"e\",\"props\":{\"n\":-0.5e-3}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data, defaultTime)
		if err != nil && !errors.Is(err, ErrNotBatch) {
			t.Fatalf("error does not wrap ErrNotBatch: %v", err)
		}
		if b.Invalid > 0 && b.FirstInvalid == "" {
			t.Fatal("invalid items without a description")
		}
		replacement := bytes.Contains(data, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`))
		check := func(what, s string, limit int) {
			if s == "" || len(s) > limit || !utf8.ValidString(s) {
				t.Fatalf("%s %q: empty, too long or not UTF-8", what, s)
			}
			if strings.ContainsRune(s, utf8.RuneError) && !replacement {
				t.Fatalf("%s %q holds a U+FFFD that the input does not", what, s)
			}
		}
		for _, e := range b.Events {
			check("user", e.User, MaxUserBytes)
			check("event", e.Name, MaxNameBytes)
		}
		for _, p := range b.Profiles {
			check("user", p.User, MaxUserBytes)
		}
		trimmed := bytes.TrimSpace(data)
		if len(trimmed) > 0 && trimmed[0] == '[' && bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) < 10000 {
			// encoding/json's verdict, within its depth limit.
			if valid := json.Valid(trimmed); valid != (err == nil) {
				t.Fatalf("json.Valid = %v but DecodeBatch error = %v", valid, err)
			}
		}
	})
}

// benchBatch is 1000 small checkout events, about 125 KB.
func benchBatch() []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"user":"user-%d","event":"checkout","time":"2026-11-28T10:%02d:00+08:00","props":{"amount":%d.5,"currency":"EUR","items":3}}`, i, i%60, i)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// BenchmarkScanBatch is the scanner's share of BenchmarkDecodeBatch.
func BenchmarkScanBatch(b *testing.B) {
	data := benchBatch()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		sc := jsonScanner{data: data}
		n := 0
		if err := sc.array(func(int, []byte, error) { n++ }); err != nil || n != 1000 {
			b.Fatalf("scanned %d items, err %v", n, err)
		}
	}
}
