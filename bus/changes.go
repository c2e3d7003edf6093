package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// ChangesStreamConfig configures EnsureChangesStream.
type ChangesStreamConfig struct {
	// MaxAge is how long changes are kept (default 7 days): a consumer
	// stopped for longer misses changes and should start again from an
	// export.
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id deduplication window (default 10
	// minutes).
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster (default 1).
	Replicas int
}

// EnsureChangesStream creates the change feed stream SEGD_CHANGES
// (subjects segd.changes.>, limits retention), or updates it, and returns it.
func EnsureChangesStream(ctx context.Context, js jetstream.JetStream, cfg ChangesStreamConfig) (jetstream.Stream, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 10 * time.Minute
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        api.ChangesStream,
		Description: "segd change feed: users entering and leaving segments, on segd.changes.<segment>",
		Subjects:    []string{api.ChangesSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", api.ChangesStream, err)
	}
	return s, nil
}

// FeedChange is a change handed to a ChangeFeed.
type FeedChange struct {
	Segment, User string
	Enter         bool
	Time          time.Time
	// Seq is the last events stream sequence applied when the change
	// happened: the batch that caused it, or the one before a clock tick.
	Seq uint64
}

// ChangeFeedOptions configures StartChangeFeed.
type ChangeFeedOptions struct {
	// ResumeAfter suppresses changes with Seq below it: they were
	// published by an earlier run (changes with Seq equal to it are
	// published again and deduplicated by their Nats-Msg-Id). See
	// FeedResumePoint.
	ResumeAfter uint64
	// MaxQueued bounds the changes waiting to be published (default one
	// million); past it changes are dropped, counted and logged: ingest
	// never waits for the feed.
	MaxQueued int
	// Logger receives warnings (nil: slog.Default()).
	Logger *slog.Logger
}

// ChangeFeed publishes membership changes to SEGD_CHANGES from its own
// goroutine. Add never blocks. Stop it with Close.
type ChangeFeed struct {
	js   jetstream.JetStream
	opts ChangeFeedOptions

	mu     sync.Mutex
	queue  []FeedChange
	wake   chan struct{}
	closed bool
	busy   bool // a batch is being published
	done   chan struct{}

	published, suppressed, dropped, failed atomic.Uint64
	lastDropLog                            atomic.Int64
}

// FeedStats counts what a ChangeFeed did.
type FeedStats struct {
	// Published changes were acked by JetStream (duplicates included).
	Published uint64
	// Suppressed changes came from events an earlier run had published.
	Suppressed uint64
	// Dropped changes overflowed the queue; Failed could not be stored.
	Dropped, Failed uint64
	// Queued changes wait to be published.
	Queued int
}

// StartChangeFeed starts publishing the changes given to Add.
func StartChangeFeed(js jetstream.JetStream, opts ChangeFeedOptions) *ChangeFeed {
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 1_000_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &ChangeFeed{js: js, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go f.run()
	return f
}

// FeedResumePoint returns the events stream sequence recorded on the last
// change in SEGD_CHANGES, for ChangeFeedOptions.ResumeAfter. When the stream
// has no message to read it from (it is new, or every change aged out),
// it returns fallback: start the feed at the events stream's end rather
// than announce every current member again.
func FeedResumePoint(ctx context.Context, stream jetstream.Stream, fallback uint64) (uint64, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return fallback, nil
	}
	msg, err := stream.GetLastMsgForSubject(ctx, api.ChangesSubjectPrefix+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fallback, nil
		}
		return 0, err
	}
	seq, err := strconv.ParseUint(msg.Header.Get(api.HeaderEventsSeq), 10, 64)
	if err != nil {
		return fallback, nil
	}
	return seq, nil
}

// Add queues changes for publishing; it never blocks.
func (f *ChangeFeed) Add(changes []FeedChange) {
	if len(changes) == 0 {
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	n := 0
	for _, c := range changes {
		if c.Seq < f.opts.ResumeAfter {
			f.suppressed.Add(1)
			continue
		}
		if len(f.queue) >= f.opts.MaxQueued {
			f.dropped.Add(1)
			continue
		}
		f.queue = append(f.queue, c)
		n++
	}
	f.mu.Unlock()
	if d := f.dropped.Load(); d > 0 && time.Now().Unix() > f.lastDropLog.Load() {
		f.lastDropLog.Store(time.Now().Unix())
		f.opts.Logger.Error("change feed: queue full, changes dropped (is JetStream reachable?)", "dropped_total", d, "max_queued", f.opts.MaxQueued)
	}
	if n > 0 {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// Stats reports the feed's counters.
func (f *ChangeFeed) Stats() FeedStats {
	f.mu.Lock()
	q := len(f.queue)
	f.mu.Unlock()
	return FeedStats{Published: f.published.Load(), Suppressed: f.suppressed.Load(), Dropped: f.dropped.Load(), Failed: f.failed.Load(), Queued: q}
}

// Flush waits until every change added so far has been published (or ctx
// ends).
func (f *ChangeFeed) Flush(ctx context.Context) error {
	for {
		f.mu.Lock()
		idle := len(f.queue) == 0 && !f.busy
		f.mu.Unlock()
		if idle {
			return nil
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close publishes what is queued (waiting up to timeout) and stops.
func (f *ChangeFeed) Close(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = f.Flush(ctx)
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	<-f.done
}

// ChangeMsgID is the Nats-Msg-Id of a change: the events stream sequence,
// the segment, the user and the direction. A replay of the same events
// within the stream's duplicate window yields the same ids, so JetStream
// stores each change once.
func ChangeMsgID(c FeedChange) string {
	dir := "x"
	if c.Enter {
		dir = "e"
	}
	return strconv.FormatUint(c.Seq, 10) + ":" + c.Segment + ":" + c.User + ":" + dir
}

func (f *ChangeFeed) run() {
	defer close(f.done)
	for {
		f.mu.Lock()
		batch := f.queue
		f.queue = nil
		closed := f.closed
		f.busy = len(batch) > 0
		f.mu.Unlock()
		if len(batch) > 0 {
			f.publish(batch)
			f.mu.Lock()
			f.busy = false
			f.mu.Unlock()
			continue
		}
		if closed {
			return
		}
		<-f.wake
	}
}

// publish sends a batch asynchronously, in order, and waits for the acks;
// a failed publish is retried (its successors' retries are deduplicated).
func (f *ChangeFeed) publish(batch []FeedChange) {
	const chunk = 1024
	for len(batch) > 0 {
		n := min(chunk, len(batch))
		part := batch[:n]
		batch = batch[n:]
		for attempt := 0; ; attempt++ {
			failedAt := f.publishChunk(part)
			if failedAt < 0 {
				break
			}
			if attempt >= 5 {
				f.failed.Add(uint64(len(part) - failedAt))
				f.opts.Logger.Error("change feed: changes not stored after retries", "count", len(part)-failedAt)
				break
			}
			part = part[failedAt:]
			time.Sleep(time.Duration(100<<attempt) * time.Millisecond) // back-off between retries
		}
	}
}

// publishChunk returns the index of the first change not stored, or -1.
func (f *ChangeFeed) publishChunk(part []FeedChange) int {
	futures := make([]jetstream.PubAckFuture, len(part))
	first := -1
	for i, c := range part {
		data, _ := json.Marshal(api.Change{User: c.User, Segment: c.Segment, Change: changeKind(c.Enter), Time: c.Time.Format(time.RFC3339Nano)})
		msg := &nats.Msg{Subject: api.ChangesSubjectPrefix + c.Segment, Data: data, Header: nats.Header{
			jetstream.MsgIDHeader: {ChangeMsgID(c)},
			api.HeaderEventsSeq:   {strconv.FormatUint(c.Seq, 10)},
		}}
		fut, err := f.js.PublishMsgAsync(msg)
		if err != nil {
			f.opts.Logger.Warn("change feed: publish failed", "err", err)
			first = i
			break
		}
		futures[i] = fut
	}
	for i, fut := range futures {
		if fut == nil {
			break
		}
		select {
		case <-fut.Ok():
			f.published.Add(1)
		case err := <-fut.Err():
			f.opts.Logger.Warn("change feed: publish not acked", "err", err)
			if first < 0 || i < first {
				first = i
			}
		case <-time.After(30 * time.Second):
			if first < 0 || i < first {
				first = i
			}
		}
	}
	return first
}

func changeKind(enter bool) string {
	if enter {
		return api.ChangeEnter
	}
	return api.ChangeExit
}
