package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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

// FuzzDecodeBatch checks that no input panics and that counts add up.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`[{"user":"u","event":"e","time":"2026-11-28T10:15:00+08:00","props":{"a":[1,{"b":null}]}}]`))
	f.Add([]byte("{\"user\":1,\"profile\":{}}\n{\"x\":1}"))
	f.Add([]byte(`[{"user":"u","event":"e","time":1e400}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data, defaultTime)
		if err != nil && !errors.Is(err, ErrNotBatch) {
			t.Fatalf("error does not wrap ErrNotBatch: %v", err)
		}
		if b.Invalid > 0 && b.FirstInvalid == "" {
			t.Fatal("invalid items without a description")
		}
	})
}

func BenchmarkDecodeBatch(b *testing.B) {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"user":"user-%d","event":"checkout","time":"2026-11-28T10:%02d:00+08:00","props":{"amount":%d.5,"currency":"EUR","items":3}}`, i, i%60, i)
	}
	sb.WriteByte(']')
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		batch, err := DecodeBatch(data, defaultTime)
		if err != nil || len(batch.Events) != 1000 {
			b.Fatalf("decoded %d events, err %v", len(batch.Events), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/event")
}
