package analysis

import (
	"testing"
	"time"

	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/rules"
)

// TestStatusAndIngestDoNotWaitForASnapshot: while a snapshot holds the
// index (CaptureState until WriteTo), the counters status reads answer at
// once, as of the capture, and observed events are queued, not waited
// for; the capture encodes the state of its start, and the queued events
// are applied after it.
func TestStatusAndIngestDoNotWaitForASnapshot(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ix := New(Config{Now: func() time.Time { return now }, MaxEvents: 3})
	ev := func(name string) []rules.Event {
		return []rules.Event{{User: "u", Name: name, Time: now.UnixMilli()}}
	}
	ix.ObserveEvents(ev("a"), []uint32{0})
	ix.ObserveEvents(ev("b"), []uint32{0})
	before := &snapio.Writer{}
	if err := ix.WriteState(before); err != nil {
		t.Fatal(err)
	}

	c := ix.CaptureState()
	got := make(chan Stats, 1)
	go func() {
		ix.ObserveEvents(ev("c"), []uint32{0})
		ix.ObserveEvents(ev("d"), []uint32{0}) // past MaxEvents: dropped
		got <- ix.StatsNow()
	}()
	select {
	case st := <-got:
		if st.Events != 2 || st.Dropped != 0 {
			t.Fatalf("during the capture: %+v, want the 2 events of before it", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("status or ingest waited for the snapshot's hold on the index (10 s)")
	}
	w := &snapio.Writer{}
	if err := c.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	if string(w.Buf) != string(before.Buf) {
		t.Fatal("the capture encodes events observed after it")
	}
	c.Release() // after WriteTo: a no-op
	if st := ix.Stats(); st.Events != 3 || st.Dropped != 1 {
		t.Fatalf("after the capture: %+v, want 3 events and 1 dropped", st)
	}
	if st := ix.StatsNow(); st.Events != 3 || st.Dropped != 1 || st.FirstDropped == "" {
		t.Fatalf("StatsNow after the capture: %+v", st)
	}
}
