package main

import (
	"strings"
	"testing"
)

// wantInOrder fails unless out holds each of want, in order.
func wantInOrder(t *testing.T, out string, want ...string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q (in order):\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
}

// TestUserShowCommand: segd user show prints the segments with since, the
// events newest first with the next page's offset, and why.
func TestUserShowCommand(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	out, err := runSegd(t, "user", "show", "u1", "--segment", "buyers", "--limit", "2", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	wantInOrder(t, out, "user u1", "in 1 segment:", "buyers", "since 2026-11-03",
		"2 events from 2026-10-28 to 2026-11-03, newest first:",
		"2026-11-03T09:00:00Z", "view", "2026-11-01T10:00:00Z", "pay", "more: --offset 2",
		"u1 is in buyers:", "pay count in last 7d = 1 (>= 1 holds)")
	out, err = runSegd(t, "user", "show", "nobody", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	wantInOrder(t, out, "segd has never seen user nobody", "in no segment", "no events from")
	if _, err := runSegd(t, "user", "show", "u1", "--segment", "nope", "--nats", url); err == nil || !strings.Contains(err.Error(), `"nope" is not defined`) {
		t.Fatalf("unknown segment: %v", err)
	}
}
