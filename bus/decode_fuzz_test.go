package bus

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := decodeBatchStd(data, defaultTime)
		got, gotErr := DecodeBatch(data, defaultTime)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("error\n got %v\nwant %v", gotErr, wantErr)
		}
		if why := sameBatch(&got, &want); why != "" {
			t.Fatalf("batch differs: %s", why)
		}
		for _, p := range []int{2, 3} {
			invalid := 0
			for k := range p {
				part, err := DecodeBatchWith(data, DecodeOptions{DefaultTime: defaultTime, Keep: func(u string) bool { return ingest.Partition(u, p) == k }})
				if fmt.Sprint(err) != fmt.Sprint(wantErr) {
					t.Fatalf("partition %d of %d: error %v, want %v", k, p, err, wantErr)
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
					t.Fatalf("partition %d of %d: %s", k, p, why)
				}
				if part.Invalid > 0 && part.FirstInvalid == "" {
					t.Fatalf("partition %d of %d: invalid items without a description", k, p)
				}
				invalid += part.Invalid
			}
			if invalid != want.Invalid {
				t.Fatalf("%d partitions count %d invalid items, the whole batch %d", p, invalid, want.Invalid)
			}
		}
	})
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
