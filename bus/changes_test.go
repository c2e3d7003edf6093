package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// feedEnv starts a server with the change feed stream.
func feedEnv(t *testing.T) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	js := streamEnv(t)
	s, err := EnsureChangesStream(context.Background(), js, ChangesStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return js, s
}

// storedChange is one change read back from SEGD_CHANGES.
type storedChange struct {
	seq           uint64
	segment, user string
	enter         bool
}

// readChanges reads every change stored in SEGD_CHANGES, in stream order.
func readChanges(t *testing.T, s jetstream.Stream) []storedChange {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedChange
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var b api.ChangeBatch
		if err := json.Unmarshal(m.Data, &b); err != nil {
			t.Fatal(err)
		}
		if len(m.Data) > 64<<10 {
			t.Fatalf("message %d holds %d bytes, over 64 KiB", seq, len(m.Data))
		}
		es, _ := strconv.ParseUint(m.Header.Get(api.HeaderEventsSeq), 10, 64)
		for _, u := range b.Enter {
			out = append(out, storedChange{es, b.Segment, u, true})
		}
		for _, u := range b.Exit {
			out = append(out, storedChange{es, b.Segment, u, false})
		}
	}
	return out
}

// addStep hands the feed one step of n changes: users prefix-0..n-1
// entering seg (leaving when exit).
func addStep(f *ChangeFeed, seq uint64, seg, prefix string, n int, exit bool) {
	f.Add(seq, time.Unix(1e9, 0), n, func(i int) FeedChange {
		return FeedChange{Segment: seg, User: prefix + strconv.Itoa(i), Enter: !exit}
	})
}

// checkExactlyOnce requires the stored changes to be want, in order.
func checkExactlyOnce(t *testing.T, got, want []storedChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("SEGD_CHANGES holds %d changes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("change %d is %+v, want %+v", i, got[i], want[i])
		}
	}
}

func wantStep(seq uint64, seg, prefix string, n int, exit bool) []storedChange {
	out := make([]storedChange, n)
	for i := range out {
		out[i] = storedChange{seq, seg, prefix + strconv.Itoa(i), !exit}
	}
	return out
}

// TestChangeFeedLargeStepBoundedAndExact hands the feed steps far larger
// than its backlog bound (an upload of 300k users, a replace that makes
// them leave): every change is stored exactly once and in order, and the
// backlog never passed its bound by more than one message.
func TestChangeFeedLargeStepBoundedAndExact(t *testing.T) {
	t.Parallel()
	js, s := feedEnv(t)
	const bound = 256 << 10
	f := StartChangeFeed(js, ChangeFeedOptions{MaxBacklog: bound})
	const n = 300_000
	addStep(f, 5, "big", "u", n, false)
	addStep(f, 6, "big", "u", n, true)
	addStep(f, 6, "other", "v", 3, false) // a second step at 6: a clock move
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	f.Close(time.Second)
	want := append(append(wantStep(5, "big", "u", n, false), wantStep(6, "big", "u", n, true)...), wantStep(6, "other", "v", 3, false)...)
	checkExactlyOnce(t, readChanges(t, s), want)
	if st.Published != uint64(len(want)) || st.Backlog != 0 {
		t.Fatalf("stats %+v, want %d published and nothing left", st, len(want))
	}
	if st.MaxBacklogBytes > bound+(64<<10)+1024 {
		t.Fatalf("the backlog reached %d bytes, bound %d", st.MaxBacklogBytes, bound)
	}
}

// refuseChanges makes JetStream refuse the feed's publishes (no stream
// takes segd.changes.> any more) and returns a function that undoes it.
func refuseChanges(t *testing.T, js jetstream.JetStream) (restore func()) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	moved := cfg
	moved.Subjects = []string{"elsewhere.>"}
	if _, err := js.UpdateStream(ctx, moved); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChangeFeedRetriesUntilStored has JetStream refuse the feed for a
// while: nothing is dropped, ingest waits once the backlog is full (and the
// status says so), and once JetStream takes changes again every change is
// stored exactly once, in order.
func TestChangeFeedRetriesUntilStored(t *testing.T) {
	t.Parallel()
	js, s := feedEnv(t)
	restore := refuseChanges(t, js)
	f := StartChangeFeed(js, ChangeFeedOptions{MaxBacklog: 64 << 10, AckTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	defer f.Close(time.Second)
	added := make(chan struct{})
	go func() {
		defer close(added)
		for seq := uint64(1); seq <= 20; seq++ {
			addStep(f, seq, "s", fmt.Sprintf("u%d-", seq), 2000, false)
		}
	}()
	eventually(t, "ingest waiting for the feed", func() bool {
		st := f.Stats()
		return !st.WaitingSince.IsZero() && st.Failed > 0 && st.LastError != ""
	})
	if st := f.Status(); st.WaitingSince == "" || st.Failed == 0 || st.Backlog == 0 {
		t.Fatalf("status while JetStream refuses: %+v", st)
	}
	select {
	case <-added:
		t.Fatal("Add returned with the backlog full and JetStream refusing")
	default:
	}
	restore()
	<-added
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var want []storedChange
	for seq := uint64(1); seq <= 20; seq++ {
		want = append(want, wantStep(seq, "s", fmt.Sprintf("u%d-", seq), 2000, false)...)
	}
	checkExactlyOnce(t, readChanges(t, s), want)
}

// TestChangeFeedClosingBoundsWaits stops a feed that JetStream refuses:
// after the grace Add stops waiting, WaitCovered reports the feed behind,
// Close returns, and the changes not stored are counted and logged.
func TestChangeFeedClosingBoundsWaits(t *testing.T) {
	t.Parallel()
	js, _ := feedEnv(t)
	refuseChanges(t, js)
	f := StartChangeFeed(js, ChangeFeedOptions{MaxBacklog: 16 << 10, AckTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	added := make(chan struct{})
	go func() {
		defer close(added)
		for seq := uint64(1); seq <= 10; seq++ {
			addStep(f, seq, "s", fmt.Sprintf("u%d-", seq), 2000, false)
		}
	}()
	eventually(t, "ingest waiting for the feed", func() bool { return !f.Stats().WaitingSince.IsZero() })
	// Before the grace, a snapshot waits; the caller's deadline ends it.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := f.WaitCovered(ctx, 1)
	cancel()
	if !errors.Is(err, ErrFeedBehind) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitCovered before the grace: %v", err)
	}
	f.Closing(100 * time.Millisecond)
	<-added // returns once the grace has passed
	if err := f.WaitCovered(context.Background(), 1); !errors.Is(err, ErrFeedBehind) {
		t.Fatalf("WaitCovered after the grace: %v, want ErrFeedBehind", err)
	}
	f.Close(time.Second)
	st := f.Stats()
	if st.Discarded == 0 || st.Published != 0 {
		t.Fatalf("stats after closing: %+v", st)
	}
}

// TestChangeFeedResume publishes, then starts a feed as a restart would:
// steps below the resume point are suppressed, the step at it is published
// again and deduplicated by id, later steps are published. (The resume
// point is that of the oldest message in flight when the last was sent;
// the flush between the steps makes it the last step's.)
func TestChangeFeedResume(t *testing.T) {
	t.Parallel()
	js, s := feedEnv(t)
	f := StartChangeFeed(js, ChangeFeedOptions{})
	ctx := context.Background()
	addStep(f, 3, "a", "x", 5, false)
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	addStep(f, 4, "a", "y", 5, false)
	f.Close(10 * time.Second)
	resume, err := FeedResumePoint(ctx, s, 99)
	if err != nil || resume != 4 {
		t.Fatalf("resume point %d, %v; want 4", resume, err)
	}
	f = StartChangeFeed(js, ChangeFeedOptions{ResumeAfter: resume})
	addStep(f, 3, "a", "x", 5, false)
	addStep(f, 4, "a", "y", 5, false)
	addStep(f, 5, "a", "z", 5, true)
	f.Close(10 * time.Second)
	want := append(append(wantStep(3, "a", "x", 5, false), wantStep(4, "a", "y", 5, false)...), wantStep(5, "a", "z", 5, true)...)
	checkExactlyOnce(t, readChanges(t, s), want)
	if st := f.Stats(); st.Suppressed != 5 {
		t.Fatalf("suppressed %d, want 5", st.Suppressed)
	}
}

// TestChangeFeedSplitsEscapedIDs sends user ids that JSON escapes six
// times over: messages still fit the max payload.
func TestChangeFeedSplitsEscapedIDs(t *testing.T) {
	t.Parallel()
	js, s := feedEnv(t)
	f := StartChangeFeed(js, ChangeFeedOptions{MaxPayload: 64 << 10, MaxMessage: 32 << 10})
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("%d%s", i, string(make([]byte, 3000))) // NULs: \u0000 each
	}
	// The first 15 enter, the others leave: halves keep each on its side.
	f.Add(1, time.Unix(1e9, 0), len(ids), func(i int) FeedChange { return FeedChange{Segment: "s", User: ids[i], Enter: i < 15} })
	f.Close(10 * time.Second)
	got := readChanges(t, s)
	if len(got) != len(ids) {
		t.Fatalf("%d changes stored, want %d (%+v)", len(got), len(ids), f.Stats())
	}
	for i, c := range got {
		if c.user != ids[i] || c.enter != (i < 15) {
			t.Fatalf("change %d: user %q, enter %v", i, c.user[:4], c.enter)
		}
	}
}

// TestChangeFeedClosingHealthyLosesNothing: past Closing's grace, a feed
// JetStream still stores keeps waiting for room and storing: stopping
// slowly is no reason to leave changes to the next start.
func TestChangeFeedClosingHealthyLosesNothing(t *testing.T) {
	t.Parallel()
	js, s := feedEnv(t)
	f := StartChangeFeed(js, ChangeFeedOptions{MaxBacklog: 64 << 10})
	f.Closing(0)
	eventually(t, "the grace to pass", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.cut
	})
	addStep(f, 1, "s", "u", 50_000, false)
	f.Close(30 * time.Second)
	checkExactlyOnce(t, readChanges(t, s), wantStep(1, "s", "u", 50_000, false))
	if st := f.Stats(); st.Discarded != 0 || st.Backlog != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestChangesStreamCapsConsumers: SEGD_CHANGES accepts at most
// MaxConsumers consumers (readers create them: without a cap, one reader
// could create them until JetStream runs out of memory or disk); past it a
// new one is refused by the server, and a stream made before the cap gets
// it when segd starts again.
func TestChangesStreamCapsConsumers(t *testing.T) {
	t.Parallel()
	js := streamEnv(t)
	ctx := context.Background()
	// A stream as an older segd made it: no cap.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: api.ChangesStream, Subjects: []string{api.ChangesSubjectPrefix + ">"}}); err != nil {
		t.Fatal(err)
	}
	s, err := EnsureChangesStream(ctx, js, ChangesStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxConsumers; got != DefaultMaxChangeConsumers {
		t.Fatalf("max consumers %d, want the default %d", got, DefaultMaxChangeConsumers)
	}
	if _, err := EnsureChangesStream(ctx, js, ChangesStreamConfig{MaxConsumers: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.CreateConsumer(ctx, api.ChangesStream, jetstream.ConsumerConfig{Durable: fmt.Sprint("c", i)}); err != nil {
			t.Fatalf("consumer %d of 3: %v", i, err)
		}
	}
	_, err = js.CreateConsumer(ctx, api.ChangesStream, jetstream.ConsumerConfig{Durable: "c3"})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeMaximumConsumersLimit {
		t.Fatalf("a 4th consumer: %v; want the maximum consumers limit", err)
	}
	// Updating an existing one is no new consumer.
	if _, err := js.UpdateConsumer(ctx, api.ChangesStream, jetstream.ConsumerConfig{Durable: "c0", Description: "updated"}); err != nil {
		t.Fatalf("updating a consumer at the cap: %v", err)
	}
}
