package scatter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// startPart runs an engine for src with its analysis index, as a Local.
func startPart(t *testing.T, src string, clock *engine.ManualClock, cfg LocalConfig) (*engine.Engine, *Local) {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "test.yaml", Data: []byte(src)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ix := analysis.New(analysis.Config{Now: clock.Now})
	e := engine.New(engine.Config{Segments: segs, Clock: clock, TickInterval: time.Hour, Observer: ix})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg.Engine, cfg.Index = e, ix
	return e, NewLocal(cfg)
}

// TestASegmentSomePartitionsLackIsNotServed: while a rule reaches the
// partitions one after the other, the partitions that have it do not
// make a whole: the merged list shows it rebuilding, size 0, naming the
// partition without it, and its count is that partition's 404.
func TestASegmentSomePartitionsLackIsNotServed(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	const base = "segments:\n  - id: viewers\n    did: {event: view, last: 7d}\n"
	e0, p0 := startPart(t, base+"  - id: newer\n    did: {event: view, last: 1d}\n", clock, LocalConfig{})
	e1, p1 := startPart(t, base, clock, LocalConfig{})
	s, err := New([]Part{p0, p1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []*engine.Engine{e0, e1} {
		msg := &ingest.Message{Seq: uint64(i + 1)}
		for _, u := range []string{"a", "b", "c", "d", "e", "f"} {
			if ingest.Partition(u, 2) == i {
				msg.Batch.Events = append(msg.Batch.Events, rules.Event{User: u, Name: "view", Time: clock.Now().UnixMilli()})
			}
		}
		if len(msg.Batch.Events) == 0 {
			t.Fatalf("no user of partition %d", i)
		}
		if err := e.Apply(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	list := s.Segments()
	if len(list) != 2 || list[0].ID != "newer" || list[1].ID != "viewers" {
		t.Fatalf("segments %+v; want newer and viewers", list)
	}
	if n := list[0]; n.Status != "rebuilding" || n.Size != 0 || !strings.Contains(n.Error, "partition 1 of 2") {
		t.Errorf("newer: %+v; want rebuilding, size 0, naming partition 1", n)
	}
	if v := list[1]; v.Status != "active" || v.Size != 6 {
		t.Errorf("viewers: %+v; want active, 6", v)
	}
	if _, err := s.SegmentCount("newer"); codeOf(err) != api.CodeNotFound || !strings.HasPrefix(err.Error(), "partition 1 of 2: ") {
		t.Errorf("count of newer: %v; want partition 1's 404", err)
	}
	// Status: LastSeq is the lowest partition's, each partition's own is
	// listed.
	st := s.Status()
	if st.LastSeq != 1 || len(st.Partitions) != 2 || st.Partitions[0].LastSeq != 1 || st.Partitions[1].LastSeq != 2 || st.Users != 6 {
		t.Errorf("status: last_seq %d, users %d, partitions %+v; want 1, 6, [1 2]", st.LastSeq, st.Users, st.Partitions)
	}
}

// TestLocalWhileReplaying: a partition that replays its log after a start
// shows its active segments rebuilding and its exact memberships
// replaying, as one host does; its status is completed by the host.
func TestLocalWhileReplaying(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	replaying := true
	_, p := startPart(t, "segments:\n  - id: viewers\n    did: {event: view, last: 7d}\n", clock, LocalConfig{
		Replaying: func() bool { return replaying },
		Status:    func(st api.StatusReply) api.StatusReply { st.Ready = !replaying; st.ReplayTo = 9; return st },
	})
	s, err := New([]Part{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l := s.Segments(); l[0].Status != "rebuilding" {
		t.Errorf("while replaying: %+v", l[0])
	}
	if v := s.MemberView("a", nil); v.Segments[0].State != api.StateReplaying {
		t.Errorf("while replaying: %+v", v.Segments[0])
	}
	if v, ok := s.TryMemberView("a", nil); !ok || v.Segments[0].State != api.StateReplaying {
		t.Errorf("while replaying, TryMemberView: %+v, %v", v.Segments, ok)
	}
	if d, err := s.SegmentDetail("viewers"); err != nil || d.Status != "rebuilding" {
		t.Errorf("while replaying: %+v, %v", d, err)
	}
	if st := s.Status(); st.Ready || st.ReplayTo != 9 {
		t.Errorf("while replaying: ready %v, replay_to %d", st.Ready, st.ReplayTo)
	}
	replaying = false
	if l := s.Segments(); l[0].Status != "active" {
		t.Errorf("after: %+v", l[0])
	}
	if v := s.MemberView("a", nil); v.Segments[0].State != api.StateExact {
		t.Errorf("after: %+v", v.Segments[0])
	}
	if v, ok := s.TryMemberView("a", nil); !ok || v.Segments[0].State != api.StateExact {
		t.Errorf("after, TryMemberView: %+v, %v", v.Segments, ok)
	}
}
