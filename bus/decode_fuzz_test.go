package bus

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// FuzzDecodeBatchDiff holds the one-pass decoder to the pre-scan and
// encoding/json decoder it replaces (decodeBatchStd): for every input the
// same items, values of the same types (float signs included), the same
// invalid count and first description, the same ErrNotBatch. With a Keep
// filter of each partition of 2 and of 3, the partitions' batches split
// the whole one: each event and profile update in its user's partition,
// in order, and each invalid item counted once.
func FuzzDecodeBatchDiff(f *testing.F) {
	for _, seed := range diffSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkSameDecode(t, data) })
}

// checkSameDecode fails t unless DecodeBatch and decodeBatchStd agree on
// data, and the partitions of 2 and 3 split the result.
func checkSameDecode(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := decodeBatchStd(data, defaultTime)
	got, gotErr := DecodeBatch(data, defaultTime)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%q: error\n got %v\nwant %v", data, gotErr, wantErr)
	}
	if why := sameBatch(&got, &want); why != "" {
		t.Fatalf("%q: batch differs: %s", data, why)
	}
	for _, p := range []int{2, 3} {
		invalid := 0
		for k := range p {
			part, err := DecodeBatchWith(data, DecodeOptions{DefaultTime: defaultTime, Keep: func(u string) bool { return ingest.Partition(u, p) == k }})
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("%q: partition %d of %d: error %v, want %v", data, k, p, err, wantErr)
			}
			mine := rules.Batch{Invalid: part.Invalid, FirstInvalid: part.FirstInvalid}
			for _, e := range want.Events {
				if ingest.Partition(e.User, p) == k {
					mine.Events = append(mine.Events, e)
				}
			}
			for _, u := range want.Profiles {
				if ingest.Partition(u.User, p) == k {
					mine.Profiles = append(mine.Profiles, u)
				}
			}
			if why := sameBatch(&part, &mine); why != "" {
				t.Fatalf("%q: partition %d of %d: %s", data, k, p, why)
			}
			if part.Invalid > 0 && part.FirstInvalid == "" {
				t.Fatalf("%q: partition %d of %d: invalid items without a description", data, k, p)
			}
			invalid += part.Invalid
		}
		if invalid != want.Invalid {
			t.Fatalf("%q: %d partitions count %d invalid items, the whole batch %d", data, p, invalid, want.Invalid)
		}
	}
}

// diffSeeds are the inputs of the decoder's tests and its other fuzz
// target's corpus.
func diffSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{
		realisticBatch(3, 1),
		profileBatch(3, 2),
		[]byte(`[{"user":"u","event":"e","time":"2026-11-28T10:15:00.123456789+08:00","props":{"a":[1,{"b":null}],"s":"x\u00e9\ud83d\ude00\n","n":-0,"m":-0.0,"big":12345678901234567890,"e":1E3}}]`),
		[]byte(`[{"user":"u","User":"v","event":"e"},{"USER":"w","Event":"f"},{"us\u0065r":"x","event":"g"},{"user":"\u017fx","uſer":"y","event":"h"}]`),
		[]byte(`[{"user":"a","event":"e","props":null,"profile":null},{"user":"a","props":{},"profile":{}},{"user":"a","event":"","profile":{}}]`),
		[]byte(`[{"user":7,"event":"e","time":1.5e3},{"user":-0,"event":"e","time":-1},{"user":9223372036854775808,"event":"e"},{"user":"u","event":5},{"user":"u","event":"e","time":true}]`),
		[]byte(`[{"user":"u","event":"e","time":"2024-02-29T23:59:59.9999999999Z"},{"user":"u","event":"e","time":"2023-02-29T00:00:00Z"},{"user":"u","event":"e","time":"0000-01-01T00:00:00-23:59"},{"user":"u","event":"e","time":"2026-11-28 10:15:00Z"},{"user":"u","event":"e","time":"2026-11-28T10:15:00,5Z"}]`),
		[]byte("{\"user\":\"u\",\"event\":\"e\"}\n\n{\"user\":\"u\",\"event\":\"e\"} x\n[1]\n{\"user\":\"v\",\"profile\":{\"k\":1}}\r\n"),
		[]byte(` [ ] `),
		[]byte(`[null,{},[],"x",1,true]`),
		[]byte(`[{"user":"u","event":"e"}]]`),
		[]byte("\u00a0[{\"user\":\"u\",\"event\":\"e\"}]\u2028"),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeBatch")
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		text, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(string(text), "\n") {
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
				if err != nil {
					tb.Fatalf("%s: %v", e.Name(), err)
				}
				seeds = append(seeds, []byte(s))
			}
		}
	}
	return seeds
}

// sameBatch says how two batches differ, or "" when they do not.
func sameBatch(got, want *rules.Batch) string {
	if got.Invalid != want.Invalid || got.FirstInvalid != want.FirstInvalid {
		return fmt.Sprintf("invalid %d %q, want %d %q", got.Invalid, got.FirstInvalid, want.Invalid, want.FirstInvalid)
	}
	if len(got.Events) != len(want.Events) || len(got.Profiles) != len(want.Profiles) {
		return fmt.Sprintf("%d events and %d profiles, want %d and %d", len(got.Events), len(got.Profiles), len(want.Events), len(want.Profiles))
	}
	for i := range got.Events {
		g, w := &got.Events[i], &want.Events[i]
		if g.User != w.User || g.Name != w.Name || g.Time != w.Time || !sameValue(g.Props, w.Props) {
			return fmt.Sprintf("event %d: %+v, want %+v", i, *g, *w)
		}
	}
	for i := range got.Profiles {
		g, w := &got.Profiles[i], &want.Profiles[i]
		if g.User != w.User || !sameValue(g.Attrs, w.Attrs) {
			return fmt.Sprintf("profile %d: %+v, want %+v", i, *g, *w)
		}
	}
	return ""
}

// sameValue compares decoded JSON values exactly: types, nil against
// empty, and the sign of zero.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case string:
		b, ok := b.(string)
		return ok && a == b
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case []any:
		b, ok := b.([]any)
		if !ok || (a == nil) != (b == nil) || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || (a == nil) != (b == nil) || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

// FuzzParseTime holds parseTime to time.Parse with time.RFC3339Nano, which
// decodeTime calls: the same verdict and the same Unix milliseconds.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-11-28T10:15:00+08:00", "2026-11-28T02:15:00.250Z", "1969-12-31T23:59:59.999Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999-23:59", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-11-28T24:00:00Z",
		"2026-11-28T10:15:00.1234567891234Z", "2026-11-28T10:15:00,5Z", "2026-11-28t10:15:00z", "2026-11-28T10:15:00+0800",
		"2026-11-28T10:15:60Z", "2026-11-28T10:15:00.Z", "+2026-11-28T10:15:00Z", "2026-1-28T10:15:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok != (err == nil) || (ok && got != want.UnixMilli()) {
			t.Fatalf("parseTime(%q) = %d, %v; time.Parse: %d, %v", s, got, ok, want.UnixMilli(), err)
		}
	})
}
