package host

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

const segmentTestRules = `
segments:
  - id: checkout_2x_7d
    did: {event: checkout, count: ">= 2", last: 7d}
  - id: young_men
    profile: age < 25 && gender == "male"
  - id: newsletter
    description: uploaded by marketing
    static: true
`

func startSegServer(t *testing.T, dataDir string, clock *engine.ManualClock) *testServer {
	t.Helper()
	rulesFile := filepath.Join(dataDir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(segmentTestRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServer(t, Config{DataDir: dataDir, Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
}

// feedChange is a change as read back from SEGD_CHANGES.
type feedChange struct {
	seq           uint64
	segment, user string
	enter         bool
}

// readFeed reads every change of SEGD_CHANGES in stream order.
func readFeed(t *testing.T, js jetstream.JetStream) []feedChange {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []feedChange
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var b api.ChangeBatch
		if err := jsonUnmarshal(m.Data, &b); err != nil {
			t.Fatal(err)
		}
		es, _ := strconv.ParseUint(m.Header.Get(api.HeaderEventsSeq), 10, 64)
		if m.Subject != api.ChangesSubjectPrefix+b.Segment {
			t.Fatalf("changes %+v on %s", b, m.Subject)
		}
		if n := m.Header.Get(api.HeaderChanges); n != strconv.Itoa(len(b.Enter)+len(b.Exit)) {
			t.Fatalf("message %d: %s says %s changes, holds %d", seq, api.HeaderChanges, n, len(b.Enter)+len(b.Exit))
		}
		for _, u := range b.Enter {
			out = append(out, feedChange{es, b.Segment, u, true})
		}
		for _, u := range b.Exit {
			out = append(out, feedChange{es, b.Segment, u, false})
		}
	}
	return out
}

// waitFeed waits until the feed has stored everything and checks that
// SEGD_CHANGES holds n changes.
func waitFeed(t *testing.T, ts *testServer, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ts.srv.ChangeFeed().Flush(ctx); err != nil {
		t.Fatalf("change feed not flushed: %v (%+v)", err, ts.srv.ChangeFeed().Stats())
	}
	if got := len(readFeed(t, ts.js)); got != n {
		t.Fatalf("SEGD_CHANGES holds %d changes, want %d (feed %+v)", got, n, ts.srv.ChangeFeed().Stats())
	}
}

// diff returns the changes from before to after, per segment in segment id
// order, as sets (the engine's order within one batch is its own).
func diff(seq uint64, segs []string, before, after map[string][]string) []feedChange {
	var out []feedChange
	for _, s := range segs {
		for _, u := range after[s] {
			if !slices.Contains(before[s], u) {
				out = append(out, feedChange{seq, s, u, true})
			}
		}
		for _, u := range before[s] {
			if !slices.Contains(after[s], u) {
				out = append(out, feedChange{seq, s, u, false})
			}
		}
	}
	return out
}

func sortChanges(cs []feedChange) {
	slices.SortFunc(cs, func(a, b feedChange) int {
		if a.seq != b.seq {
			return int(a.seq) - int(b.seq)
		}
		if a.segment != b.segment {
			if a.segment < b.segment {
				return -1
			}
			return 1
		}
		if a.user < b.user {
			return -1
		} else if a.user > b.user {
			return 1
		}
		return 0
	})
}

// TestChangeFeedUploadsAndRestart publishes random batches and uploads and
// holds SEGD_CHANGES to the reference evaluator's membership before and
// after each message; then restarts segd on the same data: the replay
// rebuilds uploaded segments, publishes no change twice, and a durable
// consumer resumes where it stopped.
func TestChangeFeedUploadsAndRestart(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	dataDir := t.TempDir()
	ts := startSegServer(t, dataDir, clock)
	ctx := context.Background()
	segDefs, err := LoadRules(rules.Options{}, filepath.Join(dataDir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segDefs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	segs := []string{"checkout_2x_7d", "newsletter", "young_men"}
	members := func() map[string][]string {
		m := map[string][]string{}
		for _, s := range segs {
			m[s] = ref.Members(s, clock.Now())
		}
		return m
	}
	var want []feedChange
	rng := rand.New(rand.NewPCG(11, 12))
	for step := range 10 {
		before := members()
		var seq uint64
		if step%4 == 3 {
			users := []string{fmt.Sprintf("u-%d", rng.IntN(30)), fmt.Sprintf("u-%d", rng.IntN(30)), "u-1"}
			mode := []string{api.UploadReplace, api.UploadAppend}[rng.IntN(2)]
			r, err := ts.client.Upload(ctx, "newsletter", users, mode)
			if err != nil {
				t.Fatal(err)
			}
			ref.Upload("newsletter", users, mode == api.UploadReplace)
			if n := len(ref.Members("newsletter", clock.Now())); r.Size != uint64(n) {
				t.Fatalf("upload %s %v: size %d, want %d", mode, users, r.Size, n)
			}
			seq = r.Seq
		} else {
			b := randomSegBatch(rng, clock.Now())
			seq = ts.publishSeq(t, b, fmt.Sprintf("b-%d", step))
			ref.Apply(b, clock.Now())
		}
		want = append(want, diff(seq, segs, before, members())...)
	}
	waitFeed(t, ts, len(want))
	got := readFeed(t, ts.js)
	// In order: events sequences never go back, per segment.
	last := map[string]uint64{}
	for _, c := range got {
		if c.seq < last[c.segment] {
			t.Fatalf("change %+v after one of seq %d", c, last[c.segment])
		}
		last[c.segment] = c.seq
	}
	sortChanges(got)
	sortChanges(want)
	if !slices.Equal(got, want) {
		t.Fatalf("SEGD_CHANGES:\n got %v\nwant %v", got, want)
	}

	// A durable consumer of one segment reads its changes, then stops.
	var mu sync.Mutex
	var seen []feedChange
	consume := func() *client.ChangeConsumer {
		c, err := client.ConsumeChanges(ctx, ts.js, client.ChangeConsumerOptions{Durable: "reminders", Segments: []string{"checkout_2x_7d"}},
			func(m client.ChangeMsg) error {
				mu.Lock()
				seen = append(seen, feedChange{m.EventsSeq, m.Segment, m.User, m.Change.Change == api.ChangeEnter})
				mu.Unlock()
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	countFor := func(cs []feedChange, seg string) int {
		n := 0
		for _, c := range cs {
			if c.segment == seg {
				n++
			}
		}
		return n
	}
	waitSeen := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			k := len(seen)
			mu.Unlock()
			if k >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("consumer saw %d changes, want %d", k, n)
			}
			time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
		}
	}
	cons := consume()
	waitSeen(countFor(want, "checkout_2x_7d"))
	cons.Stop()

	// Restart: the replay rebuilds the uploads and publishes nothing again.
	ts.close()
	ts = startSegServer(t, dataDir, clock)
	info, err := ts.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, info.CachedInfo().State.LastSeq)
	for _, s := range segs {
		got, err := ts.client.Export(ctx, s, api.FormatIDs)
		if err != nil {
			t.Fatal(err)
		}
		w := ref.Members(s, clock.Now())
		g := slices.Sorted(slices.Values(got.Users))
		if !slices.Equal(g, w) && !(len(g) == 0 && len(w) == 0) {
			t.Fatalf("after restart %s = %v, want %v", s, g, w)
		}
	}
	waitFeed(t, ts, len(want))

	// New events after the restart reach the feed and the resumed consumer,
	// which sees only what it had not acked.
	before := members()
	b := rules.Batch{Events: []rules.Event{
		{User: "late-1", Name: "checkout", Time: clock.Now().Add(-time.Hour).UnixMilli()},
		{User: "late-1", Name: "checkout", Time: clock.Now().Add(-time.Minute).UnixMilli()},
	}}
	seq := ts.publishSeq(t, b, "after-restart")
	ref.Apply(b, clock.Now())
	more := diff(seq, segs, before, members())
	if len(more) == 0 {
		t.Fatal("the late batch changed nothing")
	}
	want = append(want, more...)
	waitFeed(t, ts, len(want))
	cons = consume()
	defer cons.Stop()
	waitSeen(countFor(want, "checkout_2x_7d"))
	mu.Lock()
	gotSeen := slices.Clone(seen)
	mu.Unlock()
	var wantSeen []feedChange
	for _, c := range want {
		if c.segment == "checkout_2x_7d" {
			wantSeen = append(wantSeen, c)
		}
	}
	sortChanges(gotSeen)
	sortChanges(wantSeen)
	if !slices.Equal(gotSeen, wantSeen) {
		t.Fatalf("consumer across the restart:\n got %v\nwant %v", gotSeen, wantSeen)
	}
}

func randomSegBatch(rng *rand.Rand, now time.Time) rules.Batch {
	var b rules.Batch
	for range rng.IntN(20) + 1 {
		b.Events = append(b.Events, rules.Event{User: fmt.Sprintf("u-%d", rng.IntN(30)), Name: "checkout",
			Time: now.Add(-time.Duration(rng.IntN(3*24*60)) * time.Minute).UnixMilli()})
	}
	for range rng.IntN(4) {
		b.Profiles = append(b.Profiles, rules.ProfileUpdate{User: fmt.Sprintf("u-%d", rng.IntN(30)),
			Attrs: map[string]any{"age": float64(18 + rng.IntN(15)), "gender": []any{"male", "female"}[rng.IntN(2)]}})
	}
	return b
}

// publishSeq publishes a batch, waits until it is applied, and returns its
// stream sequence.
func (ts *testServer) publishSeq(t *testing.T, b rules.Batch, id string) uint64 {
	t.Helper()
	items := make([]api.Item, 0, len(b.Events)+len(b.Profiles))
	for _, e := range b.Events {
		items = append(items, api.Item{User: e.User, Event: e.Name, Time: time.UnixMilli(e.Time).Format(time.RFC3339Nano), Props: e.Props})
	}
	for _, p := range b.Profiles {
		items = append(items, api.Item{User: p.User, Profile: p.Attrs})
	}
	ack, err := client.PublishBatch(context.Background(), ts.js, "segd.events.test", items, id)
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, ack.Sequence)
	return ack.Sequence
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
