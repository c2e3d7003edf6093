package bus

import (
	"slices"
	"strings"
	"testing"

	"github.com/segd/segd/rules"
)

// TestDecodeBatchKeep filters items by user: the refused ones are left out
// and not counted, an invalid item is counted by whoever keeps the user
// its first "user" member names (or "" when it names none).
func TestDecodeBatchKeep(t *testing.T) {
	t.Parallel()
	in := `[{"user":"a","event":"e","time":1,"props":{"k":[1,{"x":"y"}]}},` +
		`{"user":"b","event":"e","time":2},` +
		`{"user":"b","event":"e","time":"yesterday"},` + // invalid, user b
		`{"event":"e"},` + // invalid, no user
		`{"user":"","event":"e"},` + // invalid, not an id
		`{"user":"a","profile":{"plan":"pro"}},` +
		`{"user":"b","User":"a","event":"e","time":3},` + // encoding/json takes the last: a
		`{"props":{"p":1},"user":"b","event":"e","time":4}]`
	var asked []string
	keep := func(users ...string) func(string) bool {
		return func(u string) bool {
			asked = append(asked, u)
			return slices.Contains(users, u)
		}
	}
	b, err := DecodeBatchWith([]byte(in), DecodeOptions{DefaultTime: defaultTime, Keep: keep("a")})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents := []rules.Event{{User: "a", Name: "e", Time: 1, Props: map[string]any{"k": []any{1.0, map[string]any{"x": "y"}}}}, {User: "a", Name: "e", Time: 3}}
	if got, want := jsonOf(t, b.Events), jsonOf(t, wantEvents); got != want {
		t.Errorf("events of a\n got %s\nwant %s", got, want)
	}
	if got, want := jsonOf(t, b.Profiles), `[{"User":"a","Attrs":{"plan":"pro"}}]`; got != want {
		t.Errorf("profiles of a\n got %s\nwant %s", got, want)
	}
	if b.Invalid != 0 || b.FirstInvalid != "" {
		t.Errorf("a counts %d invalid (%s), want none: the invalid items are b's and no one's", b.Invalid, b.FirstInvalid)
	}
	for _, u := range []string{"a", "b", ""} {
		if !slices.Contains(asked, u) {
			t.Errorf("Keep was not asked about %q (asked %q)", u, asked)
		}
	}

	b, err = DecodeBatchWith([]byte(in), DecodeOptions{DefaultTime: defaultTime, Keep: keep("b")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonOf(t, b.Events), `[{"User":"b","Name":"e","Time":2,"Props":null},{"User":"b","Name":"e","Time":4,"Props":{"p":1}}]`; got != want {
		t.Errorf("events of b\n got %s\nwant %s", got, want)
	}
	if b.Invalid != 1 || !strings.HasPrefix(b.FirstInvalid, `item 2: "time"`) {
		t.Errorf("b counts %d invalid, first %q; want 1, item 2's time", b.Invalid, b.FirstInvalid)
	}

	b, err = DecodeBatchWith([]byte(in), DecodeOptions{DefaultTime: defaultTime, Keep: keep("")})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events)+len(b.Profiles) != 0 || b.Invalid != 2 || !strings.HasPrefix(b.FirstInvalid, `item 3: "user" is missing`) {
		t.Errorf(`"" keeps %d events, %d profiles, %d invalid (%s); want the 2 invalid items without a user`, len(b.Events), len(b.Profiles), b.Invalid, b.FirstInvalid)
	}

	// A refused item still has to be well-formed: the message is one JSON
	// array.
	if _, err := DecodeBatchWith([]byte(`[{"user":"b","event":"e","props":{"x":tru}}]`), DecodeOptions{Keep: keep("a")}); err == nil {
		t.Error("a malformed item of a refused user passed")
	}
}

// TestDecodeBatchKeepSkipsProps checks that refused items cost no
// allocations for their props: decoding a batch whose every item is
// refused allocates a small fraction of decoding it whole.
func TestDecodeBatchKeepSkipsProps(t *testing.T) {
	data := realisticBatch(200, 3)
	var d BatchDecoder
	none := DecodeOptions{Keep: func(string) bool { return false }}
	all := DecodeOptions{Keep: func(string) bool { return true }}
	allocsNone := testing.AllocsPerRun(5, func() { _, _ = d.Decode(data, none) })
	allocsAll := testing.AllocsPerRun(5, func() { _, _ = d.Decode(data, all) })
	if allocsNone*20 > allocsAll {
		t.Errorf("refusing every item: %.0f allocations, keeping every item: %.0f; want under 1/20", allocsNone, allocsAll)
	}
}
