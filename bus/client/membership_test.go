package client_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
	"github.com/segd/segd/host/engine"
)

const flagRules = `
segments:
  - {id: beta, static: true}
  - id: buyers
    did: {event: checkout, last: 7d}
`

// startSegd starts a real segd on its own NATS server (which outlives it,
// as a shared NATS deployment does) and returns the server, segd and a
// client connection.
func startSegd(t *testing.T) (*bus.Embedded, *host.Server, *nats.Conn) {
	t.Helper()
	e, nc := startServer(t, bus.EmbeddedOptions{})
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(flagRules), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := host.Start(context.Background(), host.Config{NATSURL: e.ClientURL(), DataDir: dir, RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return e, srv, nc
}

// InSegment and InSegments answer from a real segd, and fail closed once
// it is gone: at once when nothing serves the subject, at the deadline
// when a segd holds the request without answering.
func TestInSegmentFailsClosed(t *testing.T) {
	t.Parallel()
	_, srv, nc := startSegd(t)
	c := client.New(nc, client.WithTimeout(5*time.Second))
	ctx := context.Background()
	if _, err := c.Upload(ctx, "beta", []string{"u1"}, api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	if in, err := c.InSegment(ctx, "u1", "beta"); !in || err != nil {
		t.Fatalf("InSegment(u1, beta) = %v, %v", in, err)
	}
	if in, err := c.InSegment(ctx, "u2", "beta"); in || err != nil {
		t.Fatalf("InSegment(u2, beta) = %v, %v", in, err)
	}
	if in, err := c.InSegment(ctx, "u1", "nope"); in || !client.IsNotFound(err) {
		t.Fatalf("InSegment(u1, nope) = %v, %v; want false and a 404", in, err)
	}
	got, err := c.InSegments(ctx, "u1", []string{"beta", "buyers", "nope"})
	if want := map[string]bool{"beta": true, "buyers": false}; !maps.Equal(got, want) || !client.IsNotFound(err) || errors.Is(err, client.ErrNotExact) ||
		!strings.Contains(err.Error(), "nope") {
		t.Fatalf("InSegments = %v, %v; want %v and a 404 naming nope", got, err, want)
	}
	if got, err := c.InSegments(ctx, "u1", []string{"beta", "buyers", "beta"}); err != nil || len(got) != 2 || !got["beta"] || got["buyers"] {
		t.Fatalf("InSegments = %v, %v", got, err)
	}

	// segd stops: nothing serves the subject, NATS says so at once.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if in, err := c.InSegment(ctx, "u1", "beta"); in || !client.IsUnavailable(err) {
		t.Fatalf("InSegment with segd stopped = %v, %v; want false and a 503", in, err)
	}
	if got, err := c.InSegments(ctx, "u1", []string{"beta"}); len(got) != 0 || !client.IsUnavailable(err) {
		t.Fatalf("InSegments with segd stopped = %v, %v; want false and a 503", got, err)
	}

	// A segd that takes requests and never answers (a frozen process):
	// the call returns false at its deadline, the default one or the
	// context's, well before the client's general 5s timeout.
	hung, err := nc.Subscribe(api.Group+".member.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	in, err := c.InSegment(ctx, "u1", "beta")
	if in || !client.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("InSegment with a hung segd = %v, %v; want false and a 503 wrapping context.DeadlineExceeded", in, err)
	}
	if took := time.Since(start); took >= 5*time.Second {
		t.Fatalf("InSegment waited %s: the membership timeout (%s) did not apply", took, client.DefaultMembershipTimeout)
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	got, err = c.InSegments(dctx, "u1", []string{"beta", "buyers"})
	if len(got) != 0 || !client.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) || dctx.Err() == nil {
		t.Fatalf("InSegments with a hung segd = %v, %v (ctx %v); want all false and a 503 at the context's deadline", got, err, dctx.Err())
	}
}

// stateMembership answers like fakeMembership with vip in a given state.
type stateMembership struct {
	fakeMembership
	state    string
	revision uint64
}

func (s stateMembership) MemberView(user string, segments []string) bus.MemberView {
	v := s.fakeMembership.MemberView(user, segments)
	for i := range v.Segments {
		v.Segments[i].State, v.Segments[i].Revision = s.state, s.revision
	}
	return v
}

// Answers that are not exact fail closed: replaying, a segd that reports
// no state, and a previous revision unless the client accepts those.
func TestInSegmentRefusesInexactAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		state          string
		revision       uint64
		acceptPrevious bool
		ok             bool
	}{
		{api.StateExact, 0, false, true},
		{api.StateReplaying, 0, false, false},
		{api.StateReplaying, 0, true, false},
		{"", 0, false, false},
		{api.StateRebuilding, 3, false, false},
		{api.StateRebuilding, 3, true, true},
		// A rule file's segment has revision 0; answered, it is served.
		{api.StateRebuilding, 0, true, true},
	} {
		_, nc := startServer(t, bus.EmbeddedOptions{})
		svc, err := bus.StartService(nc, stateMembership{state: tc.state, revision: tc.revision}, bus.ServiceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		opts := []client.Option{client.WithMembershipTimeout(5 * time.Second)}
		if tc.acceptPrevious {
			opts = append(opts, client.AcceptPreviousRevision())
		}
		c := client.New(nc, opts...)
		in, err := c.InSegment(context.Background(), "u1", "vip")
		got, errs := c.InSegments(context.Background(), "u1", []string{"vip"})
		if tc.ok {
			if !in || err != nil || !got["vip"] || errs != nil {
				t.Errorf("%+v: InSegment = %v, %v; InSegments = %v, %v; want true", tc, in, err, got, errs)
			}
		} else {
			var se *client.StateError
			if _, answered := got["vip"]; in || !errors.Is(err, client.ErrNotExact) || !errors.As(err, &se) || se.AsOf.Seq != 3 || answered || !errors.Is(errs, client.ErrNotExact) {
				t.Errorf("%+v: InSegment = %v, %v; InSegments = %v, %v; want false and ErrNotExact", tc, in, err, got, errs)
			}
		}
		_ = svc.Stop()
	}
}
