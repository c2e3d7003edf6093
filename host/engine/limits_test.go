package engine

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// startLimited runs an engine whose id spaces tests make small, logging to
// a buffer. limit sets them before Run starts.
func startLimited(t *testing.T, src string, now time.Time, limit func(*Engine)) (*Engine, *syncBuffer) {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "test.yaml", Data: []byte(src)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	e := New(Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	limit(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, logs
}

// TestUserIDSpaceFullRefuses: once the user id space is full, events,
// profile updates and uploaded ids of new users are refused and counted
// (never given an id that is taken, which would merge them with another
// user); those of known users are applied.
func TestUserIDSpaceFullRefuses(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e, logs := startLimited(t, `
segments:
  - {id: payers, did: {event: pay, last: 7d}}
  - {id: pro, profile: plan == "pro"}
  - {id: beta, static: true}
`, now, func(e *Engine) { e.users.limit = 2 })
	ev := func(user string) rules.Event { return rules.Event{User: user, Name: "pay", Time: now.UnixMilli()} }
	apply(t, e, 1, rules.Batch{Events: []rules.Event{ev("a"), ev("b")}})
	apply(t, e, 2, rules.Batch{
		Events:   []rules.Event{ev("c"), ev("a"), ev("d")},
		Profiles: []rules.ProfileUpdate{{User: "e", Attrs: map[string]any{"plan": "pro"}}, {User: "b", Attrs: map[string]any{"plan": "pro"}}},
	})
	if err := e.Apply(context.Background(), &ingest.Message{Seq: 3, Subject: "segd.control.upload",
		Upload: &ingest.StaticUpload{Segment: "beta", Users: []string{"f", "a"}, Replace: true}}); err != nil {
		t.Fatal(err)
	}
	for seg, want := range map[string][]string{"payers": {"a", "b"}, "pro": {"b"}, "beta": {"a"}} {
		if got := members(t, e, seg); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", seg, got, want)
		}
	}
	for _, u := range []string{"c", "d", "e", "f"} {
		if segs := e.UserSegments(u); len(segs) != 0 {
			t.Errorf("refused user %s is in %v", u, segs)
		}
	}
	st := e.Status()
	if st.Users != 2 || st.RefusedItems != 4 || st.Events != 3 || st.Profiles != 1 || st.Uploads != 1 {
		t.Errorf("status: users %d, refused %d, events %d, profiles %d, uploads %d", st.Users, st.RefusedItems, st.Events, st.Profiles, st.Uploads)
	}
	if !strings.Contains(st.FirstRefused, "seq 2") || !strings.Contains(st.FirstRefused, "user id space is full (2 users)") || !strings.Contains(st.FirstRefused, `"c"`) {
		t.Errorf("FirstRefused = %q", st.FirstRefused)
	}
	if n := strings.Count(logs.String(), "an id space is full"); n != 1 {
		t.Errorf("logged %d times within a minute, want once:\n%s", n, logs)
	}
}

// TestDistinctValueTableFullRefuses: a distinct condition whose value
// table is full leaves out events with new values, counted, rather than
// giving them the id of another value (which would merge the two).
func TestDistinctValueTableFullRefuses(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e, logs := startLimited(t, `
segments:
  - {id: browsers, did: {event: view, aggregate: distinct(page), is: ">= 2", last: 7d}}
  - {id: viewers, did: {event: view, last: 7d}}
`, now, func(e *Engine) { e.limits.values = 2 })
	ev := func(user, page string) rules.Event {
		return rules.Event{User: user, Name: "view", Time: now.UnixMilli(), Props: map[string]any{"page": page}}
	}
	apply(t, e, 1, rules.Batch{Events: []rules.Event{ev("a", "/1"), ev("a", "/2")}})
	// b's pages are new: no room. Had "/3" wrapped to an existing id, b
	// would count 1 distinct page (or merge with /1); it counts none.
	apply(t, e, 2, rules.Batch{Events: []rules.Event{ev("b", "/3"), ev("b", "/4"), ev("c", "/1"), ev("c", "/2")}})
	if got := members(t, e, "browsers"); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("browsers = %v, want [a c]", got)
	}
	if got := members(t, e, "viewers"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("viewers = %v: the event itself is applied", got)
	}
	st := e.Status()
	if st.RefusedValues != 2 || st.RefusedItems != 0 || !strings.Contains(st.FirstRefused, "props.page has 2 values") || !strings.Contains(st.FirstRefused, `"/3"`) {
		t.Errorf("status: refused values %d, items %d, first %q", st.RefusedValues, st.RefusedItems, st.FirstRefused)
	}
	if !strings.Contains(logs.String(), "distinct values") {
		t.Errorf("not logged:\n%s", logs)
	}
}

func TestDropAt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pos  []int
		want []int
	}{
		{[]int{0}, []int{1, 2, 3, 4}},
		{[]int{4}, []int{0, 1, 2, 3}},
		{[]int{1, 2}, []int{0, 3, 4}},
		{[]int{0, 2, 4}, []int{1, 3}},
		{[]int{0, 1, 2, 3, 4}, []int{}},
	} {
		if got := dropAt([]int{0, 1, 2, 3, 4}, tc.pos); !slices.Equal(got, tc.want) {
			t.Errorf("dropAt(%v) = %v, want %v", tc.pos, got, tc.want)
		}
	}
}

// syncBuffer is a log destination safe for the engine's goroutine and the
// test's.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
