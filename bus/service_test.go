package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// mapMembership is a Membership backed by maps: segment -> users.
type mapMembership struct {
	segs map[string]map[string]bool
	// onCheck, when set, runs inside IsMember and MemberView (for
	// concurrency tests).
	onCheck func() error
	// states sets a segment's state (default exact); one not exact or
	// replaying is not served.
	states map[string]string
}

// asOf is the point of the log every answer of a mapMembership reflects.
var asOf = api.AsOf{Seq: 7, Time: "2026-11-28T10:15:00Z"}

func (m *mapMembership) MemberView(user string, segments []string) MemberView {
	v := MemberView{AsOf: asOf}
	if segments == nil {
		for s := range m.segs {
			segments = append(segments, s)
		}
	}
	sort.Strings(segments)
	for _, s := range segments {
		users, ok := m.segs[s]
		if !ok {
			v.Unknown = append(v.Unknown, s)
			continue
		}
		sv := SegmentView{Segment: s, State: api.StateExact, Served: true}
		if st := m.states[s]; st != "" {
			sv.State = st
			if st != api.StateReplaying {
				sv.Served, sv.Err = false, &Error{Code: api.CodeUnavailable, Err: fmt.Errorf("segment %q is %s", s, st)}
			}
		}
		if m.onCheck != nil {
			if err := m.onCheck(); err != nil {
				sv.Served, sv.Err = false, err
			}
		}
		if sv.Served && users[user] {
			sv.Member, sv.Since = true, since
		}
		v.Segments = append(v.Segments, sv)
	}
	return v
}

func newMapMembership() *mapMembership {
	return &mapMembership{segs: map[string]map[string]bool{
		"vip":    {"u1": true, "42": true},
		"active": {"u1": true, "u2": true},
		"empty":  {},
	}}
}

func (m *mapMembership) IsMember(user, segment string) (bool, error) {
	if m.onCheck != nil {
		if err := m.onCheck(); err != nil {
			return false, err
		}
	}
	users, ok := m.segs[segment]
	if !ok {
		return false, fmt.Errorf("segment %q is not defined: %w", segment, ErrNotFound)
	}
	return users[user], nil
}

// since is the entry time every member of a mapMembership reports.
var since = time.Date(2026, 11, 27, 9, 12, 44, 0, time.UTC)

func (m *mapMembership) MemberSince(user, segment string) (bool, time.Time, error) {
	ok, err := m.IsMember(user, segment)
	if !ok {
		return ok, time.Time{}, err
	}
	return ok, since, err
}

func (m *mapMembership) UserMemberships(user string) []api.Membership {
	var out []api.Membership
	for _, s := range m.UserSegments(user) {
		out = append(out, api.Membership{Segment: s, Since: since.Format(time.RFC3339)})
	}
	return out
}

func (m *mapMembership) UserSegments(user string) []string {
	var out []string
	for s, users := range m.segs {
		if users[user] {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func (m *mapMembership) Segments() []api.SegmentInfo {
	var out []api.SegmentInfo
	for s, users := range m.segs {
		out = append(out, api.SegmentInfo{ID: s, Kind: "rule", Size: uint64(len(users)), Status: "active"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *mapMembership) SegmentCount(segment string) (uint64, error) {
	if segment == "boom" {
		return 0, errors.New("index corrupted")
	}
	users, ok := m.segs[segment]
	if !ok {
		return 0, fmt.Errorf("segment %q is not defined: %w", segment, ErrNotFound)
	}
	return uint64(len(users)), nil
}

func (m *mapMembership) Status() api.StatusReply {
	return api.StatusReply{Ready: true, LastSeq: 7, Batches: 7, Clock: "2026-11-28T10:15:00Z"}
}

// serviceEnv starts a server and the service on it, and returns a client
// connection.
func serviceEnv(t testing.TB, m Membership, opts ServiceOptions) (*Embedded, *nats.Conn, *Service) {
	t.Helper()
	e := startTestServer(t)
	snc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snc.Close)
	svc, err := StartService(snc, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	cnc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cnc.Close)
	return e, cnc, svc
}

func request(t testing.TB, nc *nats.Conn, subject, body string) *nats.Msg {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", subject, body, err)
	}
	return msg
}

// exactAsOf and allExact are the state and as_of parts of a
// mapMembership's answers.
const (
	exactAsOf = `"state":"exact","as_of":{"seq":7,"time":"2026-11-28T10:15:00Z"}`
	allExact  = `"states":[{"segment":"active","state":"exact"},{"segment":"empty","state":"exact"},{"segment":"vip","state":"exact"}],"as_of":{"seq":7,"time":"2026-11-28T10:15:00Z"}`
)

func TestServiceReplies(t *testing.T) {
	t.Parallel()
	m := newMapMembership()
	_, nc, _ := serviceEnv(t, m, ServiceOptions{Version: "1.2.3"})
	st, _ := json.Marshal(m.Status()) // api.StatusReply may grow fields
	status := string(st)
	for _, tc := range []struct{ subject, body, want string }{
		{api.SubjectMemberCheck, `{"user":"u1","segment":"vip"}`, `{"member":true,"since":"2026-11-27T09:12:44Z",` + exactAsOf + `}`},
		{api.SubjectMemberCheck, `{"user":"u2","segment":"vip"}`, `{"member":false,` + exactAsOf + `}`},
		{api.SubjectMemberCheck, `{"user":"never-seen","segment":"vip"}`, `{"member":false,` + exactAsOf + `}`},
		{api.SubjectMemberCheck, `{"user":42,"segment":"vip"}`, `{"member":true,"since":"2026-11-27T09:12:44Z",` + exactAsOf + `}`},
		{api.SubjectMemberSegments, `{"user":"u1"}`, `{"segments":["active","vip"],"memberships":[{"segment":"active","since":"2026-11-27T09:12:44Z"},{"segment":"vip","since":"2026-11-27T09:12:44Z"}],` + allExact + `}`},
		{api.SubjectMemberSegments, `{"user":"nobody"}`, `{"segments":[],"memberships":[],` + allExact + `}`},
		{api.SubjectSegmentCount, `{"segment":"active"}`, `{"count":2}`},
		{api.SubjectSegmentCount, ` {"segment":"empty"} `, `{"count":0}`},
		{api.SubjectSegmentList, ``, `{"segments":[{"id":"active","kind":"rule","size":2,"status":"active"},{"id":"empty","kind":"rule","size":0,"status":"active"},{"id":"vip","kind":"rule","size":2,"status":"active"}]}`},
		{api.SubjectStatus, `{}`, status},
		{api.SubjectStatus, ``, status},
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
}

func TestServiceErrors(t *testing.T) {
	t.Parallel()
	_, nc, _ := serviceEnv(t, newMapMembership(), ServiceOptions{})
	for _, tc := range []struct {
		subject, body string
		code, field   string
		descHas       string
	}{
		{api.SubjectMemberCheck, `{"user":"u1",`, "400", "", "malformed JSON"},
		{api.SubjectMemberCheck, `{"user":"u1" "segment":"x"}`, "400", "", "malformed JSON at byte"},
		{api.SubjectMemberCheck, `[1]`, "400", "", "JSON object"},
		{api.SubjectMemberCheck, ``, "400", "", "empty"},
		{api.SubjectMemberCheck, `{"user":"u1"}`, "400", "segment", `"segment" is required`},
		{api.SubjectMemberCheck, `{"user":"u1","segment":""}`, "400", "segment", `"segment" is required`},
		{api.SubjectMemberCheck, `{"segment":"vip"}`, "400", "user", `"user" is missing`},
		{api.SubjectMemberCheck, `{"user":"","segment":"vip"}`, "400", "user", `"user" is empty`},
		{api.SubjectMemberCheck, `{"user":true,"segment":"vip"}`, "400", "user", "string or an integer"},
		{api.SubjectMemberCheck, `{"user":"u1","segment":"vip","segmnet":"x"}`, "400", "segmnet", `unknown field "segmnet"`},
		{api.SubjectMemberCheck, `{"user":"u1","segment":"vip"} {}`, "400", "", "after the JSON object"},
		{api.SubjectMemberCheck, `{"user":"u1","segment":5}`, "400", "segment", `"segment" must be a JSON string, not number`},
		{api.SubjectMemberCheck, `{"user":"u1","segment":"nope"}`, "404", "", `segment "nope" is not defined: not found`},
		{api.SubjectMemberSegments, `{}`, "400", "user", `"user" is missing`},
		{api.SubjectSegmentCount, `{"segment":"nope"}`, "404", "", `segment "nope" is not defined`},
		{api.SubjectSegmentCount, `{"segment":"boom"}`, "500", "", "index corrupted"},
		{api.SubjectSegmentCount, `{}`, "400", "segment", `"segment" is required`},
		{api.SubjectSegmentList, `{"verbose":true}`, "400", "verbose", `unknown field "verbose"`},
		{api.SubjectStatus, `nope`, "400", "", "JSON object"},
	} {
		msg := request(t, nc, tc.subject, tc.body)
		code, desc := msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
		var body api.ErrorBody
		if err := json.Unmarshal(msg.Data, &body); err != nil {
			t.Errorf("%s %s: error body %q: %v", tc.subject, tc.body, msg.Data, err)
			continue
		}
		if code != tc.code || body.Error.Code != tc.code {
			t.Errorf("%s %s: code header %q body %q, want %s (%s)", tc.subject, tc.body, code, body.Error.Code, tc.code, desc)
		}
		if body.Error.Field != tc.field {
			t.Errorf("%s %s: field %q, want %q (%s)", tc.subject, tc.body, body.Error.Field, tc.field, desc)
		}
		if !strings.Contains(desc, tc.descHas) || body.Error.Description != desc {
			t.Errorf("%s %s: description header %q body %q, want it to contain %q", tc.subject, tc.body, desc, body.Error.Description, tc.descHas)
		}
	}
}

func TestServiceInfo(t *testing.T) {
	t.Parallel()
	_, nc, svc := serviceEnv(t, newMapMembership(), ServiceOptions{Version: "1.2.3", Metadata: map[string]string{"partitions": "0-15"}})
	info := svc.Micro().Info()
	if info.Name != api.ServiceName || info.Version != "1.2.3" || info.Metadata["partitions"] != "0-15" {
		t.Errorf("info: %+v", info)
	}
	subjects := map[string]bool{}
	for _, ep := range info.Endpoints {
		subjects[ep.Subject] = true
		for _, k := range []string{"description", "request", "reply"} {
			if ep.Metadata[k] == "" {
				t.Errorf("endpoint %s has no %s metadata", ep.Name, k)
			}
		}
		if !json.Valid([]byte(ep.Metadata["request"])) || !json.Valid([]byte(ep.Metadata["reply"])) {
			t.Errorf("endpoint %s: example is not JSON", ep.Name)
		}
	}
	for _, s := range []string{api.SubjectMemberCheck, api.SubjectMemberSegments, api.SubjectSegmentList, api.SubjectSegmentCount, api.SubjectStatus} {
		if !subjects[s] {
			t.Errorf("no endpoint on %s", s)
		}
	}
	// Discovery works as natscli uses it.
	msg := request(t, nc, "$SRV.INFO.segd", "")
	if !strings.Contains(string(msg.Data), `"segd.v1.member.check"`) {
		t.Errorf("$SRV.INFO: %s", msg.Data)
	}
	// Worker errors show up in the stats' custom data.
	request(t, nc, api.SubjectSegmentCount, `{"segment":"nope"}`)
	var found bool
	for _, ep := range svc.Micro().Stats().Endpoints {
		if ep.Name == "segment_count" {
			found = strings.Contains(string(ep.Data), `"worker_errors":1`)
		}
	}
	if !found {
		t.Errorf("segment_count stats lack the 404: %+v", svc.Micro().Stats().Endpoints)
	}
}

// TestServiceParallel proves that requests are served in parallel: each
// IsMember waits until `want` of them are in flight at once, which a
// one-at-a-time endpoint could never reach.
func TestServiceParallel(t *testing.T) {
	t.Parallel()
	const want = 4
	var mu sync.Mutex
	inflight := 0
	reached := make(chan struct{})
	m := newMapMembership()
	m.onCheck = func() error {
		mu.Lock()
		inflight++
		if inflight == want {
			close(reached)
		}
		mu.Unlock()
		select {
		case <-reached:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("requests were not served in parallel")
		}
	}
	_, nc, _ := serviceEnv(t, m, ServiceOptions{Workers: 2 * want})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			user := []string{"u1", "u2"}[i%2]
			msg, err := nc.Request(api.SubjectMemberCheck, []byte(`{"user":"`+user+`","segment":"vip"}`), 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if d := msg.Header.Get(micro.ErrorHeader); d != "" {
				errs <- errors.New(d)
				return
			}
			if wantReply := fmt.Sprintf(`{"member":%v`, user == "u1"); !strings.HasPrefix(string(msg.Data), wantReply) {
				errs <- fmt.Errorf("user %s: %s", user, msg.Data)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestServiceStop(t *testing.T) {
	t.Parallel()
	_, nc, svc := serviceEnv(t, newMapMembership(), ServiceOptions{})
	request(t, nc, api.SubjectStatus, "")
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(api.SubjectStatus, nil, 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("after Stop: %v, want no responders", err)
	}
}
