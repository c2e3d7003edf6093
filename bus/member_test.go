package bus

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// The membership contract: member.segments answers a subset, only exact
// segments when asked, lists unknown ids, and gives every covered
// segment's state and the point of the log; member.check answers a
// replaying segment with its state and a segment not served with 503.
func TestMemberStates(t *testing.T) {
	t.Parallel()
	m := newMapMembership()
	m.segs["warm"] = map[string]bool{"u1": true}
	m.segs["broken"] = map[string]bool{"u1": true}
	m.states = map[string]string{"warm": api.StateReplaying, "broken": api.StateStale}
	_, nc, _ := serviceEnv(t, m, ServiceOptions{})
	const at = `"as_of":{"seq":7,"time":"2026-11-28T10:15:00Z"}`
	for _, tc := range []struct{ subject, body, want string }{
		{api.SubjectMemberCheck, `{"user":"u1","segment":"warm"}`,
			`{"member":true,"since":"2026-11-27T09:12:44Z","state":"replaying",` + at + `}`},
		{api.SubjectMemberSegments, `{"user":"u1","segments":["vip","warm","vip","nope","broken"]}`,
			`{"segments":["vip","warm"],"memberships":[{"segment":"vip","since":"2026-11-27T09:12:44Z"},{"segment":"warm","since":"2026-11-27T09:12:44Z"}],"unavailable":["broken"],` +
				`"states":[{"segment":"broken","state":"stale"},{"segment":"vip","state":"exact"},{"segment":"warm","state":"replaying"}],"unknown":["nope"],` + at + `}`},
		{api.SubjectMemberSegments, `{"user":"u1","segments":["warm","vip","broken"],"exact_only":true}`,
			`{"segments":["vip"],"memberships":[{"segment":"vip","since":"2026-11-27T09:12:44Z"}],"unavailable":["broken","warm"],` +
				`"states":[{"segment":"broken","state":"stale"},{"segment":"vip","state":"exact"},{"segment":"warm","state":"replaying"}],` + at + `}`},
		{api.SubjectMemberSegments, `{"user":"u1","segments":["nope"]}`,
			`{"segments":[],"memberships":[],"unknown":["nope"],` + at + `}`},
	} {
		msg := request(t, nc, tc.subject, tc.body)
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Errorf("%s %s: error %s %s", tc.subject, tc.body, code, msg.Header.Get(micro.ErrorHeader))
			continue
		}
		if string(msg.Data) != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.subject, tc.body, msg.Data, tc.want)
		}
	}
	msg := request(t, nc, api.SubjectMemberCheck, `{"user":"u1","segment":"broken"}`)
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != api.CodeUnavailable || !strings.Contains(msg.Header.Get(micro.ErrorHeader), "stale") {
		t.Errorf("member.check of a stale segment: %s %s %s", code, msg.Header.Get(micro.ErrorHeader), msg.Data)
	}
}

// member.segments' "segments" is bounded and checked.
func TestMemberSegmentsLimits(t *testing.T) {
	t.Parallel()
	_, nc, _ := serviceEnv(t, newMapMembership(), ServiceOptions{})
	ids := func(n int, f func(int) string) string {
		q := make([]string, n)
		for i := range q {
			q[i] = `"` + f(i) + `"`
		}
		return `{"user":"u1","segments":[` + strings.Join(q, ",") + `]}`
	}
	for _, tc := range []struct{ body, want string }{
		{`{"user":"u1","segments":[]}`, `"segments" is empty`},
		{`{"user":"u1","segments":["vip",""]}`, `"segments"[1] is empty`},
		{`{"user":"u1","segments":["` + strings.Repeat("x", 257) + `"]}`, `"segments"[0] is 257 bytes long, more than 256`},
		{ids(api.MaxMemberSegments+1, func(i int) string { return fmt.Sprint("s", i) }), `more than 100 distinct segments`},
		{`{"user":"u1","exact_only":"yes"}`, `"exact_only" must be a JSON boolean`},
	} {
		msg := request(t, nc, api.SubjectMemberSegments, tc.body)
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != api.CodeBadRequest || !strings.Contains(msg.Header.Get(micro.ErrorHeader), tc.want) ||
			!strings.Contains(string(msg.Data), `"field":"`) {
			t.Errorf("%.80s: %s %q %s; want 400 %q", tc.body, code, msg.Header.Get(micro.ErrorHeader), msg.Data, tc.want)
		}
	}
	// Repeats count once: 10,000 of the same id, and exactly the limit of
	// distinct ones, are answered.
	for _, body := range []string{
		ids(10000, func(int) string { return "vip" }),
		ids(api.MaxMemberSegments, func(i int) string { return fmt.Sprint("s", i%api.MaxMemberSegments) }),
	} {
		msg := request(t, nc, api.SubjectMemberSegments, body)
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Errorf("%.80s: %s %s", body, code, msg.Header.Get(micro.ErrorHeader))
		}
	}
}

// viewErrMembership answers every view with Err, as a user's partition
// owned by a host that does not answer does.
type viewErrMembership struct{ *mapMembership }

func (m viewErrMembership) MemberView(user string, segments []string) MemberView {
	return MemberView{Err: &Error{Code: api.CodeUnavailable, Err: errors.New("partition 2 of 4: partition 2 has no owner (ownership is moving)")}}
}

// A view that could not be read at all (MemberView.Err) is the answer of
// member.check and member.segments, with its code: never "not defined"
// nor "in no segment".
func TestMemberViewErrorIsTheAnswer(t *testing.T) {
	t.Parallel()
	_, nc, _ := serviceEnv(t, viewErrMembership{newMapMembership()}, ServiceOptions{})
	for _, tc := range []struct{ subject, body string }{
		{api.SubjectMemberCheck, `{"user":"u1","segment":"vip"}`},
		{api.SubjectMemberSegments, `{"user":"u1"}`},
		{api.SubjectMemberSegments, `{"user":"u1","segments":["vip"]}`},
	} {
		msg := request(t, nc, tc.subject, tc.body)
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != api.CodeUnavailable || !strings.Contains(msg.Header.Get(micro.ErrorHeader), "partition 2 of 4") {
			t.Errorf("%s %s: %q %q %s; want the 503 naming the partition", tc.subject, tc.body, code, msg.Header.Get(micro.ErrorHeader), msg.Data)
		}
	}
}
