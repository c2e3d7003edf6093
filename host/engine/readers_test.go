package engine

import (
	"context"
	"testing"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// TestReadersDoNotWaitForPublish checks that a step's bitmap work does not
// hold the lock readers take: while the writer has applied a step's
// changes to its bitmaps but not yet published them, member reads and
// status answer, and they answer as of the step before (one consistent
// view: as_of and memberships agree).
func TestReadersDoNotWaitForPublish(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs, err := rules.Compile([]rules.File{{Name: "t.yaml", Data: []byte(`
segments:
  - {id: payers, did: {event: pay, last: 1d}}
`)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()
	pay := func(seq uint64, user string) *ingest.Message {
		return &ingest.Message{Seq: seq, Batch: rules.Batch{Events: []rules.Event{{User: user, Name: "pay", Time: now.UnixMilli()}}}}
	}
	if err := e.Apply(ctx, pay(1, "a")); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		bMember, aMember bool
		asOf             uint64
		status           uint64
	}
	answers := make(chan answer, 1)
	blocked := make(chan bool, 1)
	e.testHookPrepared = func() {
		e.testHookPrepared = nil // once
		go func() {
			v := e.MemberView("b", []string{"payers"})
			a, _ := e.IsMember("a", "payers")
			answers <- answer{bMember: v.Segments[0].Member, aMember: a, asOf: v.AsOf.Seq, status: e.Status().LastSeq}
		}()
		select {
		case ans := <-answers:
			answers <- ans
			blocked <- false
		case <-time.After(10 * time.Second):
			blocked <- true
		}
	}
	if err := e.Apply(ctx, pay(2, "b")); err != nil {
		t.Fatal(err)
	}
	if <-blocked {
		t.Fatal("readers waited for the writer's bitmap updates (10 s)")
	}
	ans := <-answers
	if ans.bMember || !ans.aMember || ans.asOf != 1 || ans.status != 1 {
		t.Fatalf("during step 2's publish, readers saw %+v; want step 1's state (a in, b out, as of seq 1)", ans)
	}
	if ok, _ := e.IsMember("b", "payers"); !ok {
		t.Fatal("b is not a member after step 2")
	}
}
