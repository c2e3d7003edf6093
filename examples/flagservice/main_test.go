package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
	"github.com/segd/segd/host/engine"
)

const testRules = `
segments:
  - {id: beta_testers, static: true}
  - id: big_spenders_30d
    did: {event: pay, where: "props.amount >= 100", last: 30d}
`

// End to end: a real segd on a shared NATS server, the flag service over
// HTTP. A user's flags flip as events and an upload put them in the
// segments; once segd stops, every flag serves its default, with reason
// ERROR.
func TestFlagServiceEndToEnd(t *testing.T) {
	t.Parallel()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	srv, err := host.Start(context.Background(), host.Config{NATSURL: ns.ClientURL(), DataDir: dir, RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(now), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	flags, err := LoadFlags("flags.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(nc)
	web := httptest.NewServer(Handler(flags, c))
	defer web.Close()

	get := func(key, user string) Resolution {
		t.Helper()
		resp, err := http.Get(web.URL + "/flags/" + key + "?user=" + user)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Resolution
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	waitFlag := func(key, user, variant string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := get(key, user)
			if r.Variant == variant && r.Reason == ReasonTargetingMatch {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s for %s: %+v, want variant %s by targeting", key, user, r, variant)
			}
			time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
		}
	}

	if r := get("banner", "u1"); r.Variant != "plain" || r.Reason != ReasonDefault || r.Value != "Welcome back" {
		t.Fatalf("banner before any event: %+v", r)
	}
	if r := get("new-checkout", "u1"); r.Value != false || r.Reason != ReasonDefault {
		t.Fatalf("new-checkout before the upload: %+v", r)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	items := []api.Item{
		{User: "u1", Event: "pay", Time: now.Add(-time.Hour).UnixMilli(), Props: map[string]any{"amount": 250}},
		{User: "u2", Event: "pay", Time: now.Add(-time.Hour).UnixMilli(), Props: map[string]any{"amount": 20}},
	}
	if _, err := client.PublishBatch(context.Background(), js, api.EventsSubjectPrefix+"shop", items, "pay-1"); err != nil {
		t.Fatal(err)
	}
	waitFlag("banner", "u1", "gold")
	if r := get("banner", "u2"); r.Variant != "plain" || r.Reason != ReasonDefault {
		t.Fatalf("banner for u2, who spent little: %+v", r)
	}
	if _, err := c.Upload(context.Background(), "beta_testers", []string{"u2"}, api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	waitFlag("new-checkout", "u2", "on")
	if r := get("new-checkout", "u2"); r.Value != true {
		t.Fatalf("new-checkout for a beta tester: %+v", r)
	}
	if r := get("nope", "u1"); r.ErrorCode != ErrorFlagNotFound {
		t.Fatalf("an unknown flag: %+v", r)
	}

	// segd stops: the flags fall back to their defaults, saying why.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"banner", "new-checkout"} {
		if r := get(key, map[string]string{"banner": "u1", "new-checkout": "u2"}[key]); r.Variant != flags[key].Default ||
			r.Reason != ReasonError || r.ErrorCode != ErrorGeneral || r.ErrorMessage == "" {
			t.Fatalf("%s with segd stopped: %+v, want the default with reason ERROR", key, r)
		}
	}
	// A segd that takes the request and never answers (a frozen process):
	// the default again, once the membership deadline has passed.
	hung, err := nc.Subscribe(api.SubjectMemberSegments, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if r := get("banner", "u1"); r.Variant != "plain" || r.Reason != ReasonError || !strings.Contains(r.ErrorMessage, "deadline") {
		t.Fatalf("banner with a hung segd: %+v, want the default with reason ERROR past the deadline", r)
	}
}

// membershipFunc adapts a function to Membership.
type membershipFunc func(ctx context.Context, user string, segments []string) (map[string]bool, error)

func (f membershipFunc) InSegments(ctx context.Context, user string, segments []string) (map[string]bool, error) {
	return f(ctx, user, segments)
}

// Rules are tried in order, and fail closed only from the first rule whose
// segment was not answered: one matched before it still decides.
func TestEvaluateFailsClosedInOrder(t *testing.T) {
	t.Parallel()
	flags, err := ParseFlags([]byte(`
flags:
  f:
    variants: {a: 1, b: 2, d: 0}
    default: d
    rules:
      - {segment: s1, variant: a}
      - {segment: s2, variant: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("s2 is stale")
	for _, tc := range []struct {
		in      map[string]bool
		variant string
		reason  string
	}{
		{map[string]bool{"s1": true}, "a", ReasonTargetingMatch}, // s2 unanswered, but s1 decides first
		{map[string]bool{"s1": false}, "d", ReasonError},
		{map[string]bool{"s1": false, "s2": true}, "b", ReasonTargetingMatch},
		{map[string]bool{"s1": false, "s2": false}, "d", ReasonDefault},
		{map[string]bool{"s2": true}, "d", ReasonError},
	} {
		m := membershipFunc(func(context.Context, string, []string) (map[string]bool, error) {
			if len(tc.in) < 2 {
				return tc.in, down
			}
			return tc.in, nil
		})
		if r := flags.Evaluate(context.Background(), m, "f", "u1"); r.Variant != tc.variant || r.Reason != tc.reason {
			t.Errorf("answers %v: %+v, want variant %s, reason %s", tc.in, r, tc.variant, tc.reason)
		}
	}
	for _, bad := range []string{
		"flags: {f: {variants: {a: 1}, default: b}}",
		"flags: {f: {variants: {a: 1}, default: a, rules: [{segment: s, variant: z}]}}",
		"flags: {f: {variants: {a: 1}, default: a, rules: [{variant: a}]}}",
	} {
		if _, err := ParseFlags([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
