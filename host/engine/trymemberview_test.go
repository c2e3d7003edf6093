package engine

import (
	"reflect"
	"testing"
	"time"

	"github.com/segd/segd/rules"
)

// TestTryMemberViewNeverWaits: while the writer holds (or waits for) the
// engine's lock or the user dictionary's, TryMemberView gives up at once
// instead of waiting, and otherwise answers what MemberView answers.
func TestTryMemberViewNeverWaits(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := startEngine(t, `
segments:
  - {id: payers, did: {event: pay, last: 1d}}
  - {id: buyers, did: {event: buy, last: 1d}}
`, nil, NewManualClock(now))
	apply(t, e, 1, rules.Batch{Events: []rules.Event{{User: "a", Name: "pay", Time: now.UnixMilli()}}})
	for _, asked := range [][]string{{"payers"}, nil, {"buyers", "payers", "nope"}} {
		for _, user := range []string{"a", "b"} {
			got, ok := e.TryMemberView(user, asked)
			if want := e.MemberView(user, asked); !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("TryMemberView(%q, %q) = %+v, %v; want %+v, true", user, asked, got, ok, want)
			}
		}
	}
	for name, mu := range map[string]interface {
		Lock()
		Unlock()
	}{"engine": &e.mu, "dictionary": &e.users.mu} {
		mu.Lock()
		done := make(chan bool, 1)
		go func() {
			_, ok := e.TryMemberView("a", []string{"payers"})
			done <- ok
		}()
		select {
		case ok := <-done:
			if ok {
				t.Errorf("with the %s's lock held, TryMemberView answered", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("TryMemberView waited for the %s's lock (10 s)", name)
		}
		mu.Unlock()
	}
	if v, ok := e.TryMemberView("a", []string{"payers"}); !ok || !v.Segments[0].Member {
		t.Fatalf("after the locks: %+v, %v; want a member", v, ok)
	}
}
