package engine

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

func TestChangesSinceAndHistory(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	clock := NewManualClock(start)
	segs, err := rules.Compile([]rules.File{{Name: "t.yaml", Data: []byte(`
segments:
  - {id: payer_1d, did: {event: pay, last: 1d}}
  - {id: beta, static: true}
`)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []Change
	e := New(Config{Segments: segs, Clock: clock, TickInterval: time.Hour, OnChanges: func(c []Change) {
		mu.Lock()
		changes = append(changes, c...)
		mu.Unlock()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()

	pay := func(user string) rules.Event {
		return rules.Event{User: user, Name: "pay", Time: clock.Now().UnixMilli()}
	}
	if err := e.Apply(ctx, &ingest.Message{Seq: 1, Batch: rules.Batch{Events: []rules.Event{pay("a"), pay("b")}}}); err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(3 * time.Hour))
	if err := e.Apply(ctx, &ingest.Message{Seq: 2, Upload: &ingest.StaticUpload{Segment: "beta", Users: []string{"a", "z"}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(ctx, &ingest.Message{Seq: 3, Upload: &ingest.StaticUpload{Segment: "payer_1d", Users: []string{"q"}}}); err != nil {
		t.Fatal(err)
	}
	in, since, err := e.MemberSince("a", "payer_1d")
	if err != nil || !in || !since.Equal(start) {
		t.Fatalf("a in payer_1d: %v since %v, %v; want since %v", in, since, err, start)
	}
	if m := members(t, e, "beta"); !slices.Equal(m, []string{"a", "z"}) {
		t.Fatalf("beta = %v", m)
	}
	// Replace: a leaves, y enters, z stays with its first since.
	clock.Set(start.Add(4 * time.Hour))
	if err := e.Apply(ctx, &ingest.Message{Seq: 4, Upload: &ingest.StaticUpload{Segment: "beta", Users: []string{"z", "y"}, Replace: true}}); err != nil {
		t.Fatal(err)
	}
	if m := members(t, e, "beta"); !slices.Equal(m, []string{"y", "z"}) {
		t.Fatalf("beta after replace = %v", m)
	}
	if _, since, _ := e.MemberSince("z", "beta"); !since.Equal(start.Add(3 * time.Hour)) {
		t.Fatalf("z since %v", since)
	}
	// The next day, the payers leave.
	clock.Set(start.Add(24 * time.Hour))
	if err := e.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.Uploads != 2 || st.RejectedUploads != 1 {
		t.Fatalf("status = %+v", st)
	}
	hist, err := e.History("payer_1d", start.AddDate(0, 0, -1), start.AddDate(0, 0, 5))
	if err != nil {
		t.Fatal(err)
	}
	want := []HistoryDay{{Day: "2026-11-25"}, {Day: "2026-11-26", Size: 2, Entered: 2}, {Day: "2026-11-27", Size: 0, Left: 2}}
	if !slices.Equal(hist, want) {
		t.Fatalf("history = %+v\nwant %+v", hist, want)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, c := range changes {
		dir := "exit"
		if c.Enter {
			dir = "enter"
		}
		got = append(got, c.Segment+" "+c.User+" "+dir)
	}
	wantChanges := []string{"payer_1d a enter", "payer_1d b enter", "beta a enter", "beta z enter", "beta y enter", "beta a exit", "payer_1d a exit", "payer_1d b exit"}
	if !slices.Equal(got, wantChanges) {
		t.Fatalf("changes = %q\nwant %q", got, wantChanges)
	}
}
