package host

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

const testRules = `
segments:
  - id: checkout_3x_7d
    description: checked out at least 3 times in the last 7 days
    did: {event: checkout, count: ">= 3", last: 7d}
  - id: big_payer_2d
    did: {event: pay, where: "(props.amount ?? 0) >= 50", last: 2d}
  - id: quiet_3d
    did: {event: page_view, count: "< 2", last: 3d}
  - id: young_men
    profile: age < 25 && gender == "male"
`

// testServer starts segd with an embedded NATS server on a random port, a
// temporary data dir and a manual clock, and a client on its own TCP
// connection.
type testServer struct {
	srv    *Server
	cfg    Config
	clock  *engine.ManualClock
	nc     *nats.Conn
	js     jetstream.JetStream
	client *client.Client
}

func startTestServer(t *testing.T, dataDir string, clock *engine.ManualClock, loc *time.Location) *testServer {
	t.Helper()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Location: loc, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
}

// startServer starts segd with cfg (whose Clock must be a ManualClock) and
// connects a client to it over TCP.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	srv, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, cfg: cfg, clock: cfg.Clock.(*engine.ManualClock)}
	if ts.nc, err = nats.Connect(srv.ClientURL()); err != nil {
		t.Fatal(err)
	}
	if ts.js, err = jetstream.New(ts.nc); err != nil {
		t.Fatal(err)
	}
	ts.client = client.New(ts.nc)
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) close() {
	ts.nc.Close()
	ts.srv.Close()
}

// publish sends a batch and waits until segd has applied it: the condition
// is the stream sequence segd reports, read over NATS, with a deadline.
func (ts *testServer) publish(t *testing.T, b rules.Batch, id string) {
	t.Helper()
	ts.publishSeq(t, b, id)
}

func (ts *testServer) waitApplied(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := ts.client.Status(context.Background())
		if err == nil && st.LastSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segd did not apply stream sequence %d in time (status %+v, err %v)", seq, st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// compare checks every answer segd gives over NATS against the reference.
func (ts *testServer) compare(t *testing.T, ref *reference.Evaluator, segs []*rules.Segment, users []string) {
	t.Helper()
	ctx := context.Background()
	now := ts.clock.Now()
	want := map[string][]string{} // user → segments
	list, err := ts.client.Segments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(segs) {
		t.Fatalf("segment.list has %d segments, want %d", len(list), len(segs))
	}
	for i, s := range segs {
		members := ref.Members(s.ID, now)
		n, err := ts.client.SegmentCount(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n != uint64(len(members)) || list[i].ID != s.ID || list[i].Size != n || list[i].Kind != s.Kind() {
			t.Fatalf("at %s segment %s: count %d, list %+v; reference has %d: %v", now, s.ID, n, list[i], len(members), members)
		}
		for _, u := range members {
			want[u] = append(want[u], s.ID)
		}
	}
	for _, u := range users {
		got, err := ts.client.UserSegments(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[u]) && !(len(got) == 0 && len(want[u]) == 0) {
			t.Fatalf("at %s user %s: member.segments = %v, reference %v", now, u, got, want[u])
		}
		for _, s := range segs {
			in, err := ts.client.IsMember(ctx, u, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			if in != slices.Contains(want[u], s.ID) {
				t.Fatalf("at %s member.check %s %s = %v, reference %v", now, u, s.ID, in, !in)
			}
		}
	}
}

func randomBatch(rng *rand.Rand, now time.Time) rules.Batch {
	var b rules.Batch
	names := []string{"checkout", "pay", "page_view"}
	for range rng.IntN(60) + 1 {
		ev := rules.Event{
			User: fmt.Sprintf("u-%d", rng.IntN(25)),
			Name: names[rng.IntN(len(names))],
			Time: now.Add(-time.Duration(rng.IntN(5*24*60)) * time.Minute).UnixMilli(),
		}
		if ev.Name == "pay" {
			ev.Props = map[string]any{"amount": float64(rng.IntN(100))}
		}
		b.Events = append(b.Events, ev)
	}
	for range rng.IntN(5) {
		b.Profiles = append(b.Profiles, rules.ProfileUpdate{
			User:  fmt.Sprintf("u-%d", rng.IntN(30)),
			Attrs: map[string]any{"age": float64(18 + rng.IntN(15)), "gender": []any{"male", "female", nil}[rng.IntN(3)]},
		})
	}
	return b
}

// TestServeAgainstReference runs segd end to end: batches go through
// JetStream, answers come back over NATS, and both are held to the
// reference evaluator while the clock crosses day boundaries. A restart
// replays the stream to the same state.
func TestServeAgainstReference(t *testing.T) {
	t.Parallel()
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, loc))
	dataDir := t.TempDir()
	ts := startTestServer(t, dataDir, clock, loc)
	segs, err := LoadRules(rules.Options{}, ts.cfg.RulePaths...)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, loc, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(7, 7))
	for step := range 12 {
		b := randomBatch(rng, clock.Now())
		ts.publish(t, b, fmt.Sprintf("batch-%d", step))
		ref.Apply(b, clock.Now())
		ts.compare(t, ref, segs, append(ref.Users(), "never-seen"))
		clock.Advance(time.Duration(rng.IntN(20)+1) * time.Hour)
		if err := ts.srv.Engine().Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		ts.compare(t, ref, segs, ref.Users())
	}
	// A week later with no new event, the windowed segments have emptied
	// and only the rules that hold for zero events (and profiles) remain.
	clock.Advance(8 * 24 * time.Hour)
	if err := ts.srv.Engine().Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.compare(t, ref, segs, ref.Users())
	if n, _ := ts.client.SegmentCount(context.Background(), "checkout_3x_7d"); n != 0 {
		t.Fatalf("checkout_3x_7d has %d members a week after the last event", n)
	}

	// A restart on the same data dir replays the stream to the same answers.
	ts.close()
	ts2 := startTestServer(t, dataDir, clock, loc)
	info, err := ts2.js.Stream(context.Background(), "SEGD_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	ts2.waitApplied(t, info.CachedInfo().State.LastSeq)
	ts2.compare(t, ref, segs, ref.Users())
}

func TestServeBadInput(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ts := startTestServer(t, t.TempDir(), engine.NewManualClock(now), time.UTC)
	ctx := context.Background()

	// A message that is not a batch is counted and acked; a batch with a
	// bad item keeps its good items.
	if _, err := ts.js.Publish(ctx, "segd.events.junk", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	ack, err := ts.js.Publish(ctx, "segd.events.mixed", []byte(`[
		{"user":"u-1","event":"checkout","time":"2026-11-28T09:00:00Z"},
		{"user":"u-2","event":"checkout","time":"yesterday"},
		{"user":"u-1","event":"checkout","time":1795858200000},
		{"user":"u-1","event":"checkout","time":"2026-11-28T17:30:00+08:00"}]`))
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, ack.Sequence)
	st, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.NotBatches != 1 || st.InvalidItems != 1 || st.Events != 3 || st.Users != 1 {
		t.Fatalf("status = %+v", st)
	}
	if want := `item 1: "time": cannot parse "yesterday"`; !contains(st.FirstInvalid, want) {
		t.Fatalf("first invalid = %q, want it to contain %q", st.FirstInvalid, want)
	}
	if in, err := ts.client.IsMember(ctx, "u-1", "checkout_3x_7d"); err != nil || !in {
		t.Fatalf("u-1 in checkout_3x_7d = %v, %v", in, err)
	}

	// Requests: an unknown segment is 404, a malformed request 400 naming
	// the field.
	if _, err := ts.client.IsMember(ctx, "u-1", "nope"); !client.IsNotFound(err) || !contains(err.Error(), `segment "nope" is not defined`) {
		t.Fatalf("unknown segment: err = %v", err)
	}
	_, err = ts.client.IsMember(ctx, "", "checkout_3x_7d")
	var ce *client.Error
	if !client.IsBadRequest(err) || !asClientError(err, &ce) || ce.Field != "user" {
		t.Fatalf("missing user: err = %v", err)
	}
	msg, err := ts.nc.Request("segd.v1.segment.count", []byte(`{"segmnt":"x"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "400" || !contains(msg.Header.Get("Nats-Service-Error"), "segmnt") {
		t.Fatalf("misspelt field: %s %q", code, msg.Header.Get("Nats-Service-Error"))
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: x\nprofile: age < < 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{DataDir: dir, NoListen: true, RulePaths: []string{bad}})
	if err == nil || !contains(err.Error(), "bad.yaml:2:") || !contains(err.Error(), `segment "x": profile: expr:`) {
		t.Fatalf("err = %v", err)
	}
	_, err = Start(context.Background(), Config{DataDir: dir, NoListen: true, RulePaths: []string{filepath.Join(dir, "missing")}})
	if err == nil || !contains(err.Error(), "missing") {
		t.Fatalf("err = %v", err)
	}
}

// TestServeOnExternalNATS runs segd against a NATS server it did not start,
// as `segd serve --nats URL` does.
func TestServeOnExternalNATS(t *testing.T) {
	t.Parallel()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ts := startServer(t, Config{NATSURL: ns.ClientURL(), DataDir: t.TempDir(), RulePaths: []string{rulesFile},
		Clock: engine.NewManualClock(now), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if ts.srv.ClientURL() != ns.ClientURL() {
		t.Fatalf("ClientURL = %q, want %q", ts.srv.ClientURL(), ns.ClientURL())
	}
	ts.publish(t, rules.Batch{Profiles: []rules.ProfileUpdate{{User: "u-1", Attrs: map[string]any{"age": 20.0, "gender": "male"}}}}, "p1")
	if in, err := ts.client.IsMember(context.Background(), "u-1", "young_men"); err != nil || !in {
		t.Fatalf("u-1 in young_men = %v, %v", in, err)
	}
	_, err = Start(context.Background(), Config{NATSURL: "nats://127.0.0.1:1", RulePaths: []string{rulesFile}})
	if err == nil || !contains(err.Error(), "connect to NATS at nats://127.0.0.1:1") {
		t.Fatalf("unreachable NATS: err = %v", err)
	}
}
