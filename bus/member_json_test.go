package bus

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
)

// TestMemberJSONMatches checks that the hand-written reply encoders write
// exactly what json.Marshal writes for the same replies, escapes, empty
// and nil lists included.
func TestMemberJSONMatches(t *testing.T) {
	t.Parallel()
	odd := []string{"vip", "a<b>&c", "quote\"back\\slash", "tab\tnl\n", "ünï", "\u2028line", "\xff bad", ""}
	asOf := &api.AsOf{Seq: 812, Time: "2026-11-28T10:15:00+08:00"}
	checks := []api.MemberCheckReply{
		{},
		{Member: true, Since: "2026-11-27T09:12:44+08:00", State: api.StateExact, Revision: 3, AsOf: asOf},
		{Member: false, State: api.StateRebuilding, AsOf: &api.AsOf{}},
	}
	for _, s := range odd {
		checks = append(checks, api.MemberCheckReply{Member: true, Since: s, State: s, AsOf: &api.AsOf{Seq: 1<<64 - 1, Time: s}})
	}
	for _, r := range checks {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMemberCheck(nil, &r, time.Time{}); string(got) != string(want) {
			t.Errorf("member.check reply\n got %s\nwant %s", got, want)
		}
	}
	loc := time.FixedZone("", 8*3600)
	since := time.Date(2026, 11, 27, 9, 12, 44, 0, loc)
	for _, at := range []time.Time{since, since.UTC(), time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -(9*3600+30*60)))} {
		r := api.MemberCheckReply{Member: true, Since: at.Format(time.RFC3339), State: api.StateExact, AsOf: asOf}
		want, _ := json.Marshal(r)
		r.Since = ""
		if got := appendMemberCheck(nil, &r, at); string(got) != string(want) {
			t.Errorf("member.check reply with since %v\n got %s\nwant %s", at, got, want)
		}
	}
	views := []api.MemberView{
		{},
		{AsOf: *asOf, Unknown: []string{"nope", "a<b"}},
		{AsOf: *asOf, Segments: []api.SegmentView{
			{Segment: "active_7d", State: api.StateExact, Served: true, Member: true, Since: since},
			{Segment: "old", State: api.StateRebuilding, Revision: 4, Served: true, Member: true, Since: since.UTC()},
			{Segment: "out", State: api.StateExact, Served: true, Revision: 2},
			{Segment: "stale", State: api.StateStale},
			{Segment: "vip", State: api.StateExact, Served: true, Member: true},
		}},
	}
	for _, s := range odd {
		views = append(views, api.MemberView{AsOf: api.AsOf{Time: s}, Unknown: []string{s}, Segments: []api.SegmentView{
			{Segment: s, State: s, Served: true, Member: true, Since: since},
			{Segment: s, State: s},
		}})
	}
	for _, v := range views {
		for _, exactOnly := range []bool{false, true} {
			want, err := json.Marshal(memberSegmentsReply(v, exactOnly))
			if err != nil {
				t.Fatal(err)
			}
			if got := appendMemberSegments(nil, &v, exactOnly); string(got) != string(want) {
				t.Errorf("member.segments reply (exact_only %v)\n got %s\nwant %s", exactOnly, got, want)
			}
		}
	}
}

// memberSegmentsReply is the reply member.segments answered before
// appendMemberSegments wrote it by hand: the reference it must match.
func memberSegmentsReply(v api.MemberView, exactOnly bool) api.MemberSegmentsReply {
	rep := api.MemberSegmentsReply{
		Segments:    []string{},
		Memberships: []api.Membership{},
		States:      make([]api.SegmentState, len(v.Segments)),
		Unknown:     v.Unknown,
		AsOf:        &v.AsOf,
	}
	for i, sv := range v.Segments {
		rep.States[i] = api.SegmentState{Segment: sv.Segment, State: sv.State, Revision: sv.Revision}
		if !sv.Served || exactOnly && sv.State != api.StateExact {
			rep.Unavailable = append(rep.Unavailable, sv.Segment)
			continue
		}
		if sv.Member {
			rep.Segments = append(rep.Segments, sv.Segment)
			rep.Memberships = append(rep.Memberships, api.Membership{Segment: sv.Segment, Since: sv.Since.Format(time.RFC3339)})
		}
	}
	return rep
}

// TestScanPlainRequestAgrees checks that whatever the hand scanner
// accepts, encoding/json decodes to the same values, and that the
// scanner declines (leaving the error to encoding/json) what it should.
func TestScanPlainRequestAgrees(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		data     string
		segments bool
		ok       bool
	}{
		{`{"user":"u1","segment":"vip"}`, false, true},
		{" \n{ \"segment\" : \"vip\" ,\t\"user\":\"ünï\" }\r\n", false, true},
		{`{}`, false, true},
		{`{"user":"u1","segments":["a","b","a"],"exact_only":true}`, true, true},
		{`{"exact_only":false,"user":"u1"}`, true, true},
		{`{"user":"u1","segment":"vip"} {}`, false, false},
		{`{"user":"u1","segment":"vip"`, false, false},
		{`{"user":"u1","segment":"vip",}`, false, false},
		{`{"user":"u1","User":"u2","segment":"vip"}`, false, false},
		{`{"user":"u1","user":"u2","segment":"vip"}`, false, false},
		{`{"user":"u\u0031","segment":"vip"}`, false, false},
		{`{"user":42,"segment":"vip"}`, false, false},
		{`{"user":"u1","segment":5}`, false, false},
		{`{"user":"u1","segments":["a"]}`, false, false},
		{`{"user":"u1","segment":"vip"}`, true, false},
		{`{"user":"u1","segments":[]}`, true, false},
		{`{"user":"u1","segments":null}`, true, false},
		{`{"user":"u1","segments":["a",]}`, true, false},
		{`{"user":"u1","exact_only":tru}`, true, false},
		{"{\"user\":\"u\t1\",\"segment\":\"vip\"}", false, false},
		{`[1]`, false, false},
		{``, false, false},
	} {
		p, ok := scanPlainRequest([]byte(c.data), c.segments)
		if ok != c.ok {
			t.Errorf("%q: scanned %v, want %v", c.data, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		var r struct {
			User      *string  `json:"user"`
			Segment   *string  `json:"segment"`
			Segments  []string `json:"segments"`
			ExactOnly bool     `json:"exact_only"`
		}
		if err := json.Unmarshal([]byte(c.data), &r); err != nil {
			t.Errorf("%q: scanned, but encoding/json says %v", c.data, err)
			continue
		}
		str := func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		}
		if p.user != str(r.User) || p.hasUser != (r.User != nil) || p.segment != str(r.Segment) ||
			!slices.Equal(p.segments, r.Segments) || p.exactOnly != r.ExactOnly {
			t.Errorf("%q: scanned %+v, encoding/json %+v", c.data, p, r)
		}
	}
}

// BenchmarkMemberReplyEncoding compares the hand-written member.segments
// and member.check encoders with encoding/json of the api replies they
// replace, for a user in 30 of 100 segments.
func BenchmarkMemberReplyEncoding(b *testing.B) {
	loc := time.FixedZone("", 8*3600)
	v := api.MemberView{AsOf: api.AsOf{Seq: 812, Time: "2026-11-28T10:15:00+08:00"}}
	for i := range 100 {
		sv := api.SegmentView{Segment: fmt.Sprintf("segment_%03d", i), State: api.StateExact, Served: true, Revision: 1}
		if i%3 == 0 {
			sv.Member, sv.Since = true, time.Unix(1764300000+int64(i), 0).In(loc)
		}
		v.Segments = append(v.Segments, sv)
	}
	check := api.MemberCheckReply{Member: true, Since: "2026-11-27T09:12:44+08:00", State: api.StateExact, Revision: 1, AsOf: &v.AsOf}
	b.Run("segments/encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(memberSegmentsReply(v, false)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("segments/append", func(b *testing.B) {
		for b.Loop() {
			rb := getReplyBuf()
			rb.b = appendMemberSegments(rb.b, &v, false)
			rb.release()
		}
	})
	b.Run("check/encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(check); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check/append", func(b *testing.B) {
		for b.Loop() {
			rb := getReplyBuf()
			rb.b = appendMemberCheck(rb.b, &check, time.Time{})
			rb.release()
		}
	})
}

// BenchmarkMemberRequestDecoding compares the hand scanner with the
// encoding/json decoding it replaces for a member.check request.
func BenchmarkMemberRequestDecoding(b *testing.B) {
	data := []byte(`{"user":"u42","segment":"vip"}`)
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var r struct {
				User    json.RawMessage `json:"user"`
				Segment string          `json:"segment"`
			}
			if bad := decodeRequest(data, &r, false); bad != nil {
				b.Fatal(bad)
			}
			if _, bad := requestUser(r.User); bad != nil {
				b.Fatal(bad)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if p, ok := scanPlainRequest(data, false); !ok || !plainUser(p) {
				b.Fatal("not scanned")
			}
		}
	})
}

// FuzzScanPlainRequest checks that whatever the hand scanner accepts,
// the encoding/json path it replaces accepts too, with the same values.
func FuzzScanPlainRequest(f *testing.F) {
	for _, s := range []string{`{"user":"u1","segment":"vip"}`, `{"user":"u1","segments":["a","b"],"exact_only":true}`,
		`{"user":"u1","User":"u2"}`, ` { "user" : "ü" } `, `{"user":"u\"1"}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, segments bool) {
		if checkRequest(data) != nil {
			return // refused before any decoding
		}
		p, ok := scanPlainRequest(data, segments)
		if !ok {
			return
		}
		var r struct {
			User      *string  `json:"user"`
			Segment   *string  `json:"segment"`
			Segments  []string `json:"segments"`
			ExactOnly bool     `json:"exact_only"`
		}
		var bad any
		if segments {
			var s struct {
				User      *string  `json:"user"`
				Segments  []string `json:"segments"`
				ExactOnly bool     `json:"exact_only"`
			}
			if d := decodeRequest(data, &s, false); d != nil {
				bad = d
			}
			r.User, r.Segments, r.ExactOnly = s.User, s.Segments, s.ExactOnly
		} else {
			var s struct {
				User    *string `json:"user"`
				Segment *string `json:"segment"`
			}
			if d := decodeRequest(data, &s, false); d != nil {
				bad = d
			}
			r.User, r.Segment = s.User, s.Segment
		}
		if bad != nil {
			t.Fatalf("%q: scanned, but encoding/json says %v", data, bad)
		}
		str := func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		}
		if p.user != str(r.User) || p.hasUser != (r.User != nil) || p.segment != str(r.Segment) ||
			!slices.Equal(p.segments, r.Segments) || p.exactOnly != r.ExactOnly {
			t.Fatalf("%q: scanned %+v, encoding/json %+v", data, p, r)
		}
	})
}
