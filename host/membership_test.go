package host

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// member.check and member.segments of a real segd carry the state of each
// segment and the sequence and clock of the step they reflect.
func TestMemberAnswersCarryAsOf(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ts := startTestServer(t, t.TempDir(), engine.NewManualClock(now), nil)
	var b rules.Batch
	for i := range 3 {
		b.Events = append(b.Events, rules.Event{User: "u1", Name: "checkout", Time: now.Add(-time.Duration(i) * time.Hour).UnixMilli()})
	}
	ts.publish(t, b, "b1")
	ts.publish(t, rules.Batch{Events: []rules.Event{{User: "u2", Name: "checkout", Time: now.UnixMilli()}}}, "b2")

	var check api.MemberCheckReply
	request(t, ts, api.SubjectMemberCheck, `{"user":"u1","segment":"checkout_3x_7d"}`, &check)
	wantAsOf := api.AsOf{Seq: 2, Time: "2026-11-28T10:00:00Z"}
	if !check.Member || check.State != api.StateExact || check.AsOf == nil || *check.AsOf != wantAsOf {
		t.Fatalf("member.check = %+v (as_of %+v), want a member, exact, as of %+v", check, check.AsOf, wantAsOf)
	}
	var segs api.MemberSegmentsReply
	request(t, ts, api.SubjectMemberSegments, `{"user":"u2","segments":["young_men","checkout_3x_7d","gone"],"exact_only":true}`, &segs)
	want := []api.SegmentState{{Segment: "checkout_3x_7d", State: api.StateExact}, {Segment: "young_men", State: api.StateExact}}
	if len(segs.Segments) != 0 || len(segs.Unavailable) != 0 || len(segs.States) != 2 || segs.States[0] != want[0] || segs.States[1] != want[1] ||
		len(segs.Unknown) != 1 || segs.Unknown[0] != "gone" || segs.AsOf == nil || *segs.AsOf != wantAsOf {
		t.Fatalf("member.segments = %+v", segs)
	}
}

func request(t *testing.T, ts *testServer, subject, body string, reply any) {
	t.Helper()
	raw, err := ts.client.Request(context.Background(), subject, []byte(body))
	if err != nil {
		t.Fatalf("%s %s: %v", subject, body, err)
	}
	if err := json.Unmarshal(raw, reply); err != nil {
		t.Fatal(err)
	}
}

// While segd replays its log after a start, what it serves is the log so
// far: replaying, not exact.
func TestMemberViewReplaying(t *testing.T) {
	t.Parallel()
	segs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(testRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{segAPI: &segmentAPI{replayTo: 5}, engine: engine.New(engine.Config{Segments: segs})}
	v := s.membership().MemberView("u1", []string{"young_men"})
	if len(v.Segments) != 1 || v.Segments[0].State != api.StateReplaying || !v.Segments[0].Served {
		t.Fatalf("during the replay: %+v", v)
	}
	// The service's quick path must say the same (the engine's method,
	// promoted, would not).
	q, ok := s.membership().(bus.QuickMembership)
	if !ok {
		t.Fatal("the host's membership is not a bus.QuickMembership: member requests always wait for a worker")
	}
	if v, ok := q.TryMemberView("u1", []string{"young_men"}); !ok || len(v.Segments) != 1 || v.Segments[0].State != api.StateReplaying {
		t.Fatalf("during the replay, TryMemberView: %+v, %v", v, ok)
	}
	s.segAPI.replayTo = 0
	if v := s.membership().MemberView("u1", nil); len(v.Segments) != len(segs) || v.Segments[0].State != api.StateExact {
		t.Fatalf("after the replay: %+v", v)
	}
}
