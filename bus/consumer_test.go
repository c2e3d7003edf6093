package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// recorder is an Ingester that records what it applied and can be told to
// fail or block on chosen messages.
type recorder struct {
	mu       sync.Mutex
	applied  []IngestMessage
	attempts map[uint64]int
	// fail, when set, decides whether an attempt fails (called under mu).
	fail func(m *IngestMessage, attempt int) error
	// block, when set, is waited on before applying that sequence.
	block map[uint64]chan struct{}
	// entered is closed when Apply starts on a blocked sequence.
	entered map[uint64]chan struct{}

	inflight   atomic.Int32
	concurrent atomic.Bool
	notify     chan struct{}
}

func newRecorder() *recorder {
	return &recorder{attempts: map[uint64]int{}, block: map[uint64]chan struct{}{}, entered: map[uint64]chan struct{}{}, notify: make(chan struct{}, 1)}
}

func (r *recorder) Apply(_ context.Context, m *IngestMessage) error {
	if r.inflight.Add(1) > 1 {
		r.concurrent.Store(true)
	}
	defer r.inflight.Add(-1)
	r.mu.Lock()
	blk, ent := r.block[m.Seq], r.entered[m.Seq]
	r.mu.Unlock()
	if blk != nil {
		close(ent)
		<-blk
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.poke()
	r.attempts[m.Seq]++
	if r.fail != nil {
		if err := r.fail(m, r.attempts[m.Seq]); err != nil {
			return err
		}
	}
	r.applied = append(r.applied, *m)
	return nil
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []IngestMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]IngestMessage(nil), r.applied...)
}

// waitApplied waits until n messages have been applied.
func (r *recorder) waitApplied(t *testing.T, n int) []IngestMessage {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := r.snapshot()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("applied %d messages, want %d", len(got), n)
		}
	}
}

// eventually polls cond until it holds or the deadline passes; for state
// only the server knows, such as ack counts.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// streamEnv starts a server with the events stream.
func streamEnv(t *testing.T) jetstream.JetStream {
	t.Helper()
	e := startTestServer(t)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureEventsStream(context.Background(), js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func publish(t *testing.T, js jetstream.JetStream, subject, data string) uint64 {
	t.Helper()
	ack, err := js.Publish(context.Background(), subject, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func batchOf(i int) string {
	return fmt.Sprintf(`[{"user":"u%d","event":"e","time":%d}]`, i, i)
}

func fastOpts() ConsumerOptions {
	return ConsumerOptions{RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond}
}

func waitAllAcked(t *testing.T, c *Consumer) {
	t.Helper()
	eventually(t, "every message acked", func() bool {
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 && ci.NumRedelivered == 0
	})
}

func TestEnsureEventsStream(t *testing.T) {
	t.Parallel()
	js := streamEnv(t) // created once
	s, err := EnsureEventsStream(context.Background(), js, StreamConfig{MaxAge: time.Hour})
	if err != nil {
		t.Fatalf("second call (update): %v", err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxAge != time.Hour || cfg.Duplicates != 10*time.Minute || cfg.Storage != jetstream.FileStorage {
		t.Errorf("config: max age %s, duplicates %s, storage %s", cfg.MaxAge, cfg.Duplicates, cfg.Storage)
	}
	if cfg.MaxMsgSize != 1<<20 {
		t.Errorf("MaxMsgSize = %d, want the server's max payload", cfg.MaxMsgSize)
	}
	if len(cfg.Subjects) != 3 || cfg.Subjects[0] != "segd.events.>" || cfg.Subjects[1] != ControlSubjects || cfg.Subjects[2] != "segd.part.>" {
		t.Errorf("subjects %v", cfg.Subjects)
	}
}

func TestConsumeInOrderWithGarbage(t *testing.T) {
	t.Parallel()
	js := streamEnv(t)
	garbage := map[int]string{3: "not json", 7: "[1,2", 11: "\x00\xff", 15: `"str"`}
	const n = 40
	for i := 1; i <= n; i++ {
		data, ok := garbage[i]
		if !ok {
			data = batchOf(i)
		}
		if seq := publish(t, js, fmt.Sprintf("segd.events.%d", i%3), data); seq != uint64(i) {
			t.Fatalf("published seq %d, want %d", seq, i)
		}
	}
	rec := newRecorder()
	c, err := Consume(context.Background(), js, rec, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	got := rec.waitApplied(t, n)
	for i, m := range got {
		want := uint64(i + 1)
		if m.Seq != want {
			t.Fatalf("message %d has seq %d, want %d (out of order)", i, m.Seq, want)
		}
		if m.Subject != fmt.Sprintf("segd.events.%d", int(want)%3) || m.Time == 0 {
			t.Errorf("seq %d: subject %q time %d", m.Seq, m.Subject, m.Time)
		}
		if _, bad := garbage[int(want)]; bad {
			if !errors.Is(m.Err, ErrNotBatch) {
				t.Errorf("seq %d: Err = %v, want ErrNotBatch", m.Seq, m.Err)
			}
			continue
		}
		if m.Err != nil || len(m.Batch.Events) != 1 || m.Batch.Events[0].User != fmt.Sprintf("u%d", want) {
			t.Errorf("seq %d: err %v, batch %+v", m.Seq, m.Err, m.Batch)
		}
	}
	waitAllAcked(t, c)
	if c.LastSeq() != n {
		t.Errorf("LastSeq = %d, want %d", c.LastSeq(), n)
	}
	if rec.concurrent.Load() {
		t.Error("Apply ran concurrently")
	}
}

func TestConsumeRetriesFailedApplyInOrder(t *testing.T) {
	t.Parallel()
	js := streamEnv(t)
	const n = 10
	for i := 1; i <= n; i++ {
		publish(t, js, "segd.events.0", batchOf(i))
	}
	rec := newRecorder()
	rec.fail = func(m *IngestMessage, attempt int) error {
		if m.Seq == 4 && attempt <= 3 {
			return errors.New("partition busy")
		}
		return nil
	}
	c, err := Consume(context.Background(), js, rec, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	got := rec.waitApplied(t, n)
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("applied seq %d at position %d: a later message overtook the failing one", m.Seq, i)
		}
	}
	rec.mu.Lock()
	if rec.attempts[4] != 4 {
		t.Errorf("seq 4 was attempted %d times, want 4", rec.attempts[4])
	}
	rec.mu.Unlock()
	waitAllAcked(t, c)
}

func TestConsumeStopDrainsAndResumes(t *testing.T) {
	t.Parallel()
	js := streamEnv(t)
	const n = 10
	for i := 1; i <= n; i++ {
		publish(t, js, "segd.events.0", batchOf(i))
	}
	rec := newRecorder()
	release := make(chan struct{})
	rec.block[3], rec.entered[3] = release, make(chan struct{})
	c, err := Consume(context.Background(), js, rec, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	<-rec.entered[3] // Apply(3) is in hand
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	eventually(t, "Stop to begin", c.stopping.Load)
	select {
	case <-stopped:
		t.Fatal("Stop returned while Apply was still running")
	default:
	}
	close(release)
	<-stopped
	got := rec.snapshot()
	if len(got) != 3 || got[2].Seq != 3 || c.LastSeq() != 3 {
		t.Fatalf("after Stop: applied %d (last seq %d); want 1..3: the message in hand finishes, prefetched ones are handed back", len(got), c.LastSeq())
	}

	// A new Consume on the same durable resumes right after the last ack,
	// in order, although 4.. were delivered to the stopped one.
	for i := n + 1; i <= n+5; i++ {
		publish(t, js, "segd.events.0", batchOf(i))
	}
	c2, err := Consume(context.Background(), js, rec, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	got = rec.waitApplied(t, n+5)
	c2.Stop()
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("position %d has seq %d after resume", i, m.Seq)
		}
	}

	// A snapshot at seq 7 resumes at 8.
	rec2 := newRecorder()
	opts := fastOpts()
	opts.StartSeq = 8
	c3, err := Consume(context.Background(), js, rec2, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Stop()
	got = rec2.waitApplied(t, n+5-7)
	for i, m := range got {
		if m.Seq != uint64(8+i) {
			t.Fatalf("after StartSeq 8: position %d has seq %d", i, m.Seq)
		}
	}
	waitAllAcked(t, c3)
}

func TestConsumeStopsWithContext(t *testing.T) {
	t.Parallel()
	js := streamEnv(t)
	publish(t, js, "segd.events.0", batchOf(1))
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Consume(ctx, js, rec, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	rec.waitApplied(t, 1)
	cancel()
	c.Stop() // returns once the context-triggered stop completed
	c.Stop()
}

func TestConsumeRejectsNilIngester(t *testing.T) {
	t.Parallel()
	if _, err := Consume(context.Background(), nil, nil, ConsumerOptions{}); err == nil {
		t.Fatal("nil Ingester accepted")
	}
}

// TestConsumeGivesUpAfterMaxAttempts: a message whose Apply keeps failing
// is tried MaxAttempts times, then dead-lettered with the reason, counted
// and acked, and the stream moves on.
func TestConsumeGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	js, dlq := dlqEnv(t)
	for i := 1; i <= 3; i++ {
		publish(t, js, "segd.events.0", batchOf(i))
	}
	rec := newRecorder()
	rec.fail = func(m *IngestMessage, _ int) error {
		if m.Seq == 2 {
			return errors.New("index on fire")
		}
		return nil
	}
	opts := fastOpts()
	opts.MaxAttempts = 3
	opts.DeadLetters = dlq
	c, err := Consume(context.Background(), js, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	got := rec.waitApplied(t, 2)
	if got[0].Seq != 1 || got[1].Seq != 3 {
		t.Fatalf("applied %d, %d; want 1, 3", got[0].Seq, got[1].Seq)
	}
	waitAllAcked(t, c)
	rec.mu.Lock()
	attempts := rec.attempts[2]
	rec.mu.Unlock()
	if attempts != 3 {
		t.Errorf("seq 2 tried %d times, want 3", attempts)
	}
	st := c.Stats()
	if st.GaveUp != 1 || st.Retries != 2 || st.LostToDLQ != 0 ||
		!strings.Contains(st.FirstError, "seq 2 on segd.events.0") || !strings.Contains(st.LastError, "index on fire") {
		t.Errorf("stats %+v", st)
	}
	dl := deadLetter(t, js, 2)
	if r := dl.Header.Get(HeaderDLQReason); !strings.Contains(r, "apply failed 3 times") || !strings.Contains(r, "index on fire") {
		t.Errorf("dead letter reason %q", r)
	}
	if string(dl.Data) != batchOf(2) {
		t.Errorf("dead letter data %q", dl.Data)
	}
}

// TestConsumeDeadLetterFailureDoesNotBlock: with the dead-letter stream
// gone, a message that is not a batch and one whose Apply fails are
// logged, counted as lost to the DLQ and acked; the stream moves on.
func TestConsumeDeadLetterFailureDoesNotBlock(t *testing.T) {
	t.Parallel()
	js, dlq := dlqEnv(t)
	if err := js.DeleteStream(context.Background(), DeadLetterStream); err != nil {
		t.Fatal(err)
	}
	publish(t, js, "segd.events.0", "not json")
	publish(t, js, "segd.events.0", batchOf(2))
	publish(t, js, "segd.events.0", batchOf(3))
	rec := newRecorder()
	rec.fail = func(m *IngestMessage, _ int) error {
		if m.Seq == 2 {
			return errors.New("always")
		}
		return nil
	}
	opts := fastOpts()
	opts.MaxAttempts = 2
	opts.DeadLetters = dlq
	c, err := Consume(context.Background(), js, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	got := rec.waitApplied(t, 2)
	if got[0].Seq != 1 || !errors.Is(got[0].Err, ErrNotBatch) || got[1].Seq != 3 {
		t.Fatalf("applied %d (%v), %d", got[0].Seq, got[0].Err, got[1].Seq)
	}
	waitAllAcked(t, c)
	if st := c.Stats(); st.LostToDLQ != 2 || st.GaveUp != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestConsumeNeverGivesUpWhileStopping: a failure while the consumer stops
// hands the message back, even at its last attempt.
func TestConsumeNeverGivesUpWhileStopping(t *testing.T) {
	t.Parallel()
	js, dlq := dlqEnv(t)
	publish(t, js, "segd.events.0", batchOf(1))
	rec := newRecorder()
	release := make(chan struct{})
	rec.block[1], rec.entered[1] = release, make(chan struct{})
	rec.fail = func(_ *IngestMessage, attempt int) error {
		if attempt == 1 {
			return errors.New("interrupted")
		}
		return nil
	}
	opts := fastOpts()
	opts.MaxAttempts = 1
	opts.DeadLetters = dlq
	c, err := Consume(context.Background(), js, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	<-rec.entered[1]
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	eventually(t, "Stop to begin", c.stopping.Load)
	close(release)
	<-stopped
	if st := c.Stats(); st.GaveUp != 0 || c.LastSeq() != 0 || dlq.Count() != 0 {
		t.Fatalf("gave up while stopping: stats %+v, last seq %d, dead letters %d", st, c.LastSeq(), dlq.Count())
	}
	// The next run gets it again and applies it.
	delete(rec.block, 1)
	c2, err := Consume(context.Background(), js, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	got := rec.waitApplied(t, 1)
	if got[0].Seq != 1 {
		t.Fatalf("applied %d", got[0].Seq)
	}
	waitAllAcked(t, c2)
}

// TestConsumeCallbackAfterStop: nats.go may run the message callback after
// Stop has returned (a standby host that stood down panicked with "send on
// closed channel" when the decoded-message pipe was closed). A late
// delivery must be handed back, not applied, and nothing may panic.
func TestConsumeCallbackAfterStop(t *testing.T) {
	t.Parallel()
	js := streamEnv(t)
	publish(t, js, "segd.events.0", batchOf(1))
	publish(t, js, "segd.events.0", batchOf(2))
	rec := newRecorder()
	c, err := Consume(context.Background(), js, rec, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	rec.waitApplied(t, 2)
	c.Stop()

	// A delivery of message 3 reaching the stopped consumer's callback.
	publish(t, js, "segd.events.0", batchOf(3))
	other, err := js.CreateOrUpdateConsumer(context.Background(), EventsStream, jetstream.ConsumerConfig{
		Durable: "late", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverLastPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := other.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var late jetstream.Msg
	for m := range batch.Messages() {
		late = m
	}
	if late == nil {
		t.Fatal("no message fetched")
	}
	c.stopping.Store(false) // as if the callback had passed its first check just before Stop
	c.handle(late)
	if got := rec.snapshot(); len(got) != 2 {
		t.Fatalf("applied %d messages; want 2: a delivery after Stop is handed back", len(got))
	}
}
