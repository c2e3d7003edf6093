package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/rules"
)

// EventsStream is the JetStream stream that keeps every ingest batch.
const EventsStream = "SEGD_EVENTS"

// ControlSubjects are the events stream's subjects for control messages
// such as static segment uploads (ControlUploadSubject).
const ControlSubjects = "segd.control.>"

// PartitionSubjects are the events stream's subjects for partition-aware
// producers' batches: segd.part.<N>.events (api.PartitionSubject).
const PartitionSubjects = api.PartitionSubjectPrefix + ">"

// DefaultDurable is the default name of the durable consumer that feeds the
// host.
const DefaultDurable = "segd"

// StreamConfig configures EnsureEventsStream. The zero value gives the
// defaults described on each field.
type StreamConfig struct {
	// Name is the stream name (default EventsStream).
	Name string
	// Subjects default to segd.events.>; ControlSubjects and
	// PartitionSubjects are always added.
	Subjects []string
	// MaxAge is how long batches are kept (default 90 days). State is a
	// snapshot plus a replay of the log after it, so MaxAge must stay well
	// above the snapshot interval or a restart loses events.
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id deduplication window (default 10
	// minutes): a producer retrying within it cannot store a batch twice.
	Duplicates time.Duration
	// MaxMsgSize caps a stored batch (default: the server's max payload).
	MaxMsgSize int32
	// Replicas is the number of copies in a cluster (default 1).
	Replicas int
	// Partitions is the number of partitions users are split into (0
	// means 1; at most api.MaxPartitions). It is recorded in the stream's
	// metadata (api.StreamPartitionsKey) when the stream has none, and a
	// stream recorded with another number is an error wrapping
	// ErrPartitionsMismatch: a partition's state is a function of its
	// users, so the number is fixed for a stream.
	Partitions int
}

// EnsureEventsStream creates the events stream, or updates it to cfg if it
// exists, and returns it. It is safe to call on every start.
func EnsureEventsStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Name == "" {
		cfg.Name = EventsStream
	}
	if len(cfg.Subjects) == 0 {
		cfg.Subjects = []string{api.EventsSubjectPrefix + ">"}
	}
	if !slices.Contains(cfg.Subjects, ControlSubjects) {
		// Static segment uploads travel with the events, so that a replay
		// applies them in order.
		cfg.Subjects = append(slices.Clone(cfg.Subjects), ControlSubjects)
	}
	if !slices.Contains(cfg.Subjects, PartitionSubjects) {
		// Partition-aware producers' batches (segd.part.<N>.events).
		cfg.Subjects = append(slices.Clone(cfg.Subjects), PartitionSubjects)
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if err := CheckPartitions(cfg.Partitions); err != nil {
		return nil, err
	}
	metadata := map[string]string{}
	var cur jetstream.Stream
	var got jetstream.StreamConfig
	if c, err := js.Stream(ctx, cfg.Name); err == nil {
		cur, got = c, c.CachedInfo().Config
		n, recorded, err := streamPartitions(got)
		if err != nil {
			return nil, err
		}
		if recorded && n != cfg.Partitions {
			return nil, fmt.Errorf("%w: stream %s holds %d partitions (metadata %s=%d) but segd was started with %d: start it with --partitions %d (the number is fixed for a stream)",
				ErrPartitionsMismatch, cfg.Name, n, api.StreamPartitionsKey, n, cfg.Partitions, n)
		}
		for k, v := range got.Metadata {
			if !strings.HasPrefix(k, "_nats.") { // the server's own
				metadata[k] = v
			}
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	metadata[api.StreamPartitionsKey] = strconv.Itoa(cfg.Partitions)
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 90 * 24 * time.Hour
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 10 * time.Minute
	}
	if cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxMsgSize <= 0 {
		if mp := js.Conn().MaxPayload(); mp > 0 && mp <= 1<<31-1 {
			cfg.MaxMsgSize = int32(mp)
		}
	}
	want := jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "segd ingest batches (JSON array or NDJSON of events and profile updates)",
		Subjects:    cfg.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
		MaxMsgSize:  cfg.MaxMsgSize,
		Replicas:    cfg.Replicas,
		Discard:     jetstream.DiscardOld,
		Metadata:    metadata,
	}
	if cur != nil && sameStreamConfig(got, want) {
		// Nothing to change: no update, which the server would apply
		// while other hosts' consumers are created on the stream (an
		// embedded nats-server v2.15 races there under -race).
		return cur, nil
	}
	s, err := js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// sameStreamConfig reports whether the stream as configured (got)
// already has every setting EnsureEventsStream asks for (want).
func sameStreamConfig(got, want jetstream.StreamConfig) bool {
	if got.Description != want.Description || !slices.Equal(got.Subjects, want.Subjects) || got.Retention != want.Retention ||
		got.Storage != want.Storage || got.MaxAge != want.MaxAge || got.Duplicates != want.Duplicates ||
		got.MaxMsgSize != want.MaxMsgSize || got.Replicas != want.Replicas || got.Discard != want.Discard {
		return false
	}
	for k, v := range want.Metadata {
		if got.Metadata[k] != v {
			return false
		}
	}
	return true
}

// ConsumerOptions configures Consume. The zero value gives the defaults
// described on each field.
type ConsumerOptions struct {
	// Stream is the stream to consume (default EventsStream).
	Stream string
	// Durable names the durable pull consumer (default DefaultDurable).
	Durable string
	// FilterSubjects restricts the consumer to some subjects, e.g. one
	// partition's segd.events.3 (default: the whole stream).
	FilterSubjects []string
	// StartSeq, when non-zero, rewinds the consumer so that the first
	// message delivered is the one at this stream sequence: after loading a
	// snapshot taken at sequence S, pass S+1. When zero, the consumer
	// resumes after the last acked message.
	StartSeq uint64
	// AckWait is how long the server waits for an ack before redelivering
	// (default 30s). While Apply fails, the consumer keeps the message
	// alive with progress acks, so this bounds only a stuck process.
	AckWait time.Duration
	// MaxAckPending caps delivered but unacked messages (default 1000). It
	// only needs to exceed BufferMessages so that the server can refill the
	// client buffer while the host works: messages are applied one by one.
	MaxAckPending int
	// BufferMessages and BufferBytes bound the client-side prefetch buffer
	// (defaults 500 messages and 64 MiB; a batch may be up to 1 MiB).
	BufferMessages int
	BufferBytes    int
	// RetryDelay is the first wait after Apply fails (default 250ms); it
	// doubles up to MaxRetryDelay (default 10s, and below AckWait/2).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxAttempts bounds the tries of a message's Apply, and of storing its
	// dead letter, so that no message and no failing side effect blocks
	// the stream (default DefaultMaxAttempts, about 45s of back-off with
	// the default delays). A message whose Apply still fails is then
	// dead-lettered with the reason and acked, unapplied; a dead letter
	// that cannot be stored is logged with the message's sequence, subject,
	// size and reason. ConsumerStats counts both. At most MaxMaxAttempts.
	MaxAttempts int
	// Logger receives warnings (nil: slog.Default()).
	Logger *slog.Logger
	// DeadLetters, if set, receives a copy of every message that is not a
	// batch before Apply sees it, and of every message given up after
	// MaxAttempts. A failure to store it is retried up to MaxAttempts
	// times.
	DeadLetters *DeadLetters
	// Partition and Partitions, with Partitions > 1, make this the
	// consumer of one partition: each message is reduced to the
	// partition's items (KeepPartition) before Apply sees it. The caller
	// sets Durable and FilterSubjects (PartitionDurable,
	// PartitionFilterSubjects).
	Partition, Partitions int
}

// DefaultMaxAttempts is ConsumerOptions.MaxAttempts' default.
const DefaultMaxAttempts = 10

// MaxMaxAttempts bounds ConsumerOptions.MaxAttempts: with the default
// delays, 100 tries hold a failing message, and the stream behind it,
// about 16 minutes before it is dead-lettered.
const MaxMaxAttempts = 100

// CheckMaxAttempts checks a number of tries given for
// ConsumerOptions.MaxAttempts: 1 to MaxMaxAttempts.
func CheckMaxAttempts(n int) error {
	if n < 1 || n > MaxMaxAttempts {
		return fmt.Errorf("max attempts %d: must be 1 to %d (a failing message holds the stream for its tries' back-off, up to 10s each)", n, MaxMaxAttempts)
	}
	return nil
}

func (o *ConsumerOptions) setDefaults() {
	if o.Stream == "" {
		o.Stream = EventsStream
	}
	if o.Durable == "" {
		o.Durable = DefaultDurable
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.BufferMessages <= 0 {
		o.BufferMessages = 500
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = 64 << 20
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = max(1000, 2*o.BufferMessages)
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 250 * time.Millisecond
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = 10 * time.Second
	}
	o.MaxRetryDelay = min(o.MaxRetryDelay, o.AckWait/2)
	o.RetryDelay = min(o.RetryDelay, o.MaxRetryDelay)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Consumer feeds messages from the events stream to an Ingester, one at a
// time and in stream order. Stop it with Stop.
type Consumer struct {
	opts     ConsumerOptions
	ctx      context.Context
	ing      Ingester
	cons     jetstream.Consumer
	cc       jetstream.ConsumeContext
	stopping atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once

	// lastSeq is the last applied stream sequence. Written only by the
	// applier goroutine.
	lastSeq atomic.Uint64

	// pipe hands decoded messages from the message callback (which nats.go
	// runs on one goroutine) to the applier goroutine, so that the next
	// message is decoded while one is applied; its capacity bounds how
	// many wait decoded. quit (closed by Stop once consuming has stopped)
	// ends the applier, which hands back what is left in the pipe and
	// closes applied. The pipe is never closed: a late callback must not
	// panic.
	pipe     chan decoded
	quit     chan struct{}
	quitOnce sync.Once
	applied  chan struct{}
	// sending is read-held by the callback while it hands a message over,
	// and taken by the applier once quit is closed, before it empties the
	// pipe: nothing is left in it unacked.
	sending sync.RWMutex

	mu    sync.Mutex
	stats ConsumerStats
}

// ConsumerStats counts what the consumer could not do (see
// ConsumerOptions.MaxAttempts). The counters start at zero with each
// Consume.
type ConsumerStats struct {
	// Retries counts failed attempts (of Apply or of storing a dead
	// letter) that were tried again.
	Retries uint64
	// GaveUp counts messages acked unapplied after MaxAttempts failed
	// applies; each was dead-lettered (or counted in LostToDLQ).
	GaveUp uint64
	// LostToDLQ counts messages whose dead letter could not be stored
	// after MaxAttempts tries; the log has their sequence, subject, size
	// and reason.
	LostToDLQ uint64
	// FirstError and LastError describe the first and the latest failed
	// attempt, with the message's sequence and subject.
	FirstError, LastError string
}

// Consume starts feeding the durable pull consumer's messages to ing. It
// creates or updates the durable (explicit ack), rewinds it (see
// ConsumerOptions.StartSeq), and returns once consuming has begun.
//
// Guarantees to the Ingester:
//   - Apply is called serially, never concurrently, in stream order; a
//     message is acked only after Apply returned nil for it.
//   - A message that is not a batch reaches Apply with Err set (wrapping
//     ErrNotBatch) and is acked like any other once Apply returns nil.
//   - When Apply fails, the same message is retried (freshly decoded) with
//     growing delays, up to ConsumerOptions.MaxAttempts tries; later
//     messages wait, so order holds. A message that still fails is
//     dead-lettered, counted (Stats) and acked unapplied: nothing blocks
//     the stream for good. On Stop, or once ctx is cancelled, the message
//     in hand is never given up but left for redelivery.
//   - Apply is never called for a sequence at or below one already applied
//     by this Consumer (a late redelivery is acked and skipped).
//
// ctx is passed to Apply; cancelling it stops the consumer as Stop does.
func Consume(ctx context.Context, js jetstream.JetStream, ing Ingester, opts ConsumerOptions) (*Consumer, error) {
	if ing == nil {
		return nil, errors.New("bus.Consume: nil Ingester")
	}
	opts.setDefaults()
	if err := CheckMaxAttempts(opts.MaxAttempts); err != nil {
		return nil, fmt.Errorf("bus.Consume: %w", err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        opts.Durable,
		Description:    "segd host ingest",
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        opts.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  opts.MaxAckPending,
		FilterSubjects: opts.FilterSubjects,
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, opts.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", opts.Durable, opts.Stream, err)
	}
	if cons, err = rewind(ctx, js, cons, cfg, opts); err != nil {
		return nil, err
	}
	c := &Consumer{opts: opts, ctx: ctx, ing: ing, cons: cons, stopCh: make(chan struct{}),
		pipe: make(chan decoded, decodeAhead), quit: make(chan struct{}), applied: make(chan struct{})}
	if opts.StartSeq > 0 {
		c.lastSeq.Store(opts.StartSeq - 1)
	}
	go c.applyLoop()
	c.cc, err = cons.Consume(c.handle,
		jetstream.PullMaxMessagesWithBytesLimit(opts.BufferMessages, opts.BufferBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			opts.Logger.Warn("segd consumer", "durable", opts.Durable, "err", err)
		}))
	if err != nil {
		c.quitOnce.Do(func() { close(c.quit) })
		<-c.applied
		return nil, fmt.Errorf("consumer %s: %w", opts.Durable, err)
	}
	context.AfterFunc(ctx, c.Stop)
	return c, nil
}

// rewind resets the durable's delivery position. Without it, messages that
// an earlier run received but never acked would be redelivered only after
// AckWait, behind newer ones, and break the order the host relies on.
func rewind(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, cfg jetstream.ConsumerConfig, opts ConsumerOptions) (jetstream.Consumer, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.ResetConsumerToSequence(rctx, opts.Stream, opts.Durable, opts.StartSeq) // 0: ack floor + 1
	if err == nil {
		return cons, nil
	}
	if opts.StartSeq == 0 {
		// A server older than 2.14 cannot reset; resuming still works,
		// only leftovers of a crashed run may arrive late.
		opts.Logger.Warn("segd consumer: cannot reset to the ack floor", "durable", opts.Durable, "err", err)
		return cons, nil
	}
	// Older servers: recreate the durable at the start sequence.
	if derr := js.DeleteConsumer(ctx, opts.Stream, opts.Durable); derr != nil && !errors.Is(derr, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer %s: reset to sequence %d: %v; delete: %w", opts.Durable, opts.StartSeq, err, derr)
	}
	cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cfg.OptStartSeq = opts.StartSeq
	cons, cerr := js.CreateConsumer(ctx, opts.Stream, cfg)
	if cerr != nil {
		return nil, fmt.Errorf("consumer %s: reset to sequence %d: %v; recreate: %w", opts.Durable, opts.StartSeq, err, cerr)
	}
	return cons, nil
}

// handle runs on the subscription's single goroutine, hence serially: it
// decodes the message and hands it to the applier (applyLoop), so that
// decoding the next message overlaps applying this one.
func (c *Consumer) handle(msg jetstream.Msg) {
	if c.stopping.Load() {
		// Draining after Stop: hand the buffered messages back in order
		// rather than applying them.
		_ = msg.Nak()
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery; it has no sequence to apply in order.
		c.opts.Logger.Error("segd consumer: message without metadata, terminated", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	if seq <= c.lastSeq.Load() {
		_ = msg.Ack()
		return
	}
	d := decoded{msg: msg, seq: seq, time: md.Timestamp.UnixMilli()}
	d.im = c.decode(d)
	c.sending.RLock()
	defer c.sending.RUnlock()
	select {
	case <-c.quit:
		_ = msg.Nak() // the applier is ending: hand it back
		return
	default:
	}
	select {
	case c.pipe <- d:
	case <-c.quit:
		_ = msg.Nak()
	}
}

// decodeAhead is how many decoded messages may wait for the applier: one
// is decoded while another is applied.
const decodeAhead = 1

// decoded is a message the callback decoded for the applier.
type decoded struct {
	msg  jetstream.Msg
	seq  uint64
	time int64 // the stream timestamp, Unix ms
	im   *IngestMessage
}

func (c *Consumer) decode(d decoded) *IngestMessage {
	return DecodePartitionMessage(d.seq, d.msg.Subject(), d.msg.Data(), d.time, c.opts.Partition, c.opts.Partitions)
}

// applyLoop applies the decoded messages in order until quit, then hands
// back those left in the pipe.
func (c *Consumer) applyLoop() {
	defer close(c.applied)
	for {
		select {
		case d := <-c.pipe:
			c.apply(d)
		case <-c.quit:
			// Wait for a hand-over in progress, which sees quit and
			// stops; later ones see it at once.
			c.sending.Lock()
			defer c.sending.Unlock()
			for {
				select {
				case d := <-c.pipe:
					_ = d.msg.Nak()
				default:
					return
				}
			}
		}
	}
}

// apply hands one decoded message to the Ingester, with retries, and acks
// it. It runs on the applier goroutine, hence serially and in order.
func (c *Consumer) apply(d decoded) {
	msg, seq, im := d.msg, d.seq, d.im
	if c.stopping.Load() {
		_ = msg.Nak() // decoded before Stop: handed back like the buffered ones
		return
	}
	if seq <= c.lastSeq.Load() {
		_ = msg.Ack()
		return
	}
	r := retrier{c: c, msg: msg, seq: seq}
	decode := func() *IngestMessage { return c.decode(d) }
	if im.Err != nil && c.opts.DeadLetters != nil {
		// Kept before Apply counts it: a message that is not a batch is
		// acked only once recorded, or once recording it has failed for
		// good (then it is logged and counted).
		done, ok := r.try("dead letter", func() error { return c.opts.DeadLetters.Send(c.ctx, msg, seq, im.Err) })
		if !done {
			return
		}
		if !ok {
			c.lost(msg, seq, im.Err, r.err)
		}
	}
	r.delay = 0
	first := true
	done, ok := r.try("apply", func() error {
		if !first { // Apply may have changed it
			im = decode()
		}
		first = false
		return c.ing.Apply(c.ctx, im)
	})
	if !done {
		return
	}
	if !ok && !c.giveUp(msg, seq, fmt.Errorf("apply failed %d times, last: %w", r.attempts, r.err)) {
		return
	}
	// A plain ack: DoubleAck costs a round trip per message (about 8x
	// slower), and a lost ack only means a redelivery, which the seq check
	// above skips and the snapshot sequence makes harmless after restarts.
	if err := msg.Ack(); err != nil {
		c.opts.Logger.Warn("segd consumer: ack failed", "seq", seq, "subject", msg.Subject(), "err", err)
	}
	c.lastSeq.Store(seq)
}

// retrier tries one step of handling a message with back-off.
type retrier struct {
	c        *Consumer
	msg      jetstream.Msg
	seq      uint64
	delay    time.Duration
	attempts int
	err      error // the last failure
}

// try calls f until it succeeds or has failed MaxAttempts times (ok false).
// done is false when the consumer stopped meanwhile: the message was then
// handed back (nak) for the next run, never given up.
func (r *retrier) try(what string, f func() error) (done, ok bool) {
	c := r.c
	if r.delay == 0 {
		r.delay = c.opts.RetryDelay
	}
	for r.attempts = 1; ; r.attempts++ {
		if r.err = f(); r.err == nil {
			return true, true
		}
		c.noteError(r.msg, r.seq, what, r.err)
		if c.ctx.Err() != nil || c.stopping.Load() {
			_ = r.msg.Nak()
			return false, false
		}
		if r.attempts >= c.opts.MaxAttempts {
			return true, false
		}
		c.opts.Logger.Warn("segd consumer: "+what+" failed, will retry", "seq", r.seq, "subject", r.msg.Subject(), "attempt", r.attempts,
			"max_attempts", c.opts.MaxAttempts, "retry_in", r.delay, "err", r.err)
		c.mu.Lock()
		c.stats.Retries++
		c.mu.Unlock()
		// Keep the message ours while we wait, so the server neither
		// redelivers it nor lets a later one overtake it.
		_ = r.msg.InProgress()
		t := time.NewTimer(r.delay)
		select {
		case <-t.C:
		case <-c.stopCh:
			t.Stop()
			_ = r.msg.Nak()
			return false, false
		}
		r.delay = min(2*r.delay, c.opts.MaxRetryDelay)
	}
}

// noteError records a failed attempt for Stats.
func (c *Consumer) noteError(msg jetstream.Msg, seq uint64, what string, err error) {
	desc := fmt.Sprintf("seq %d on %s: %s: %v", seq, msg.Subject(), what, err)
	c.mu.Lock()
	if c.stats.FirstError == "" {
		c.stats.FirstError = desc
	}
	c.stats.LastError = desc
	c.mu.Unlock()
}

// giveUp dead-letters a message that could not be applied, so that it is
// kept, and counts it; the caller acks it unless it returns false (the
// consumer stopped meanwhile and handed the message back).
func (c *Consumer) giveUp(msg jetstream.Msg, seq uint64, reason error) bool {
	c.opts.Logger.Error("segd consumer: gave up applying a message; it is dead-lettered and acked", "seq", seq,
		"subject", msg.Subject(), "size", len(msg.Data()), "reason", reason)
	c.mu.Lock()
	c.stats.GaveUp++
	c.mu.Unlock()
	if c.opts.DeadLetters == nil {
		c.lost(msg, seq, reason, errors.New("no dead-letter stream"))
		return true
	}
	r := retrier{c: c, msg: msg, seq: seq}
	done, ok := r.try("dead letter", func() error { return c.opts.DeadLetters.SendUnapplied(c.ctx, msg, seq, reason) })
	if done && !ok {
		c.lost(msg, seq, reason, r.err)
	}
	return done
}

// lost logs and counts a message whose dead letter could not be stored:
// the log line is all that is left of it outside the events stream.
func (c *Consumer) lost(msg jetstream.Msg, seq uint64, reason, err error) {
	c.opts.Logger.Error("segd consumer: could not store a dead letter; acking the message anyway", "seq", seq,
		"subject", msg.Subject(), "size", len(msg.Data()), "reason", reason, "err", err)
	c.mu.Lock()
	c.stats.LostToDLQ++
	c.mu.Unlock()
}

// Stats returns the consumer's failure counters.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// safeDecode turns a decoder panic into ErrNotBatch: no input may stop the
// consumer.
func safeDecode(data []byte, defaultTime int64) (b rules.Batch, err error) {
	return safeDecodeWith(data, DecodeOptions{DefaultTime: defaultTime})
}

// safeDecodeWith is safeDecode with options.
func safeDecodeWith(data []byte, opts DecodeOptions) (b rules.Batch, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = rules.Batch{}, fmt.Errorf("%w: decoder panic: %v", ErrNotBatch, r)
		}
	}()
	return DecodeBatchWith(data, opts)
}

// LastSeq is the stream sequence of the last message applied and acked (0
// before the first).
func (c *Consumer) LastSeq() uint64 { return c.lastSeq.Load() }

// Info fetches the durable's state from the server (pending counts, ack
// floor).
func (c *Consumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.cons.Info(ctx)
}

// Stop stops consuming and waits until the message in hand has been applied
// and acked; messages already prefetched are handed back unapplied, so the
// next Consume sees them first and in order. Safe to call more than once and
// from several goroutines.
func (c *Consumer) Stop() {
	c.stopOnce.Do(func() {
		c.stopping.Store(true)
		close(c.stopCh)
		c.cc.Drain()
	})
	<-c.cc.Closed()
	c.quitOnce.Do(func() { close(c.quit) })
	<-c.applied
}

// DecodeMessage turns a stored events-stream message into what the
// consumer hands the Ingester: an upload on ControlUploadSubject, a batch
// otherwise (Err set when it is neither). t is the stream timestamp (Unix
// ms), the default time of events without one.
func DecodeMessage(seq uint64, subject string, data []byte, t int64) *IngestMessage {
	im := &IngestMessage{Seq: seq, Subject: subject, Time: t}
	if subject == ControlUploadSubject {
		im.Upload, im.Err = DecodeUpload(data)
	} else {
		im.Batch, im.Err = safeDecode(data, t)
	}
	return im
}

// LogReader reads a stream's retained messages in sequence order, from
// one sequence to another, through an ephemeral ordered consumer: what a
// rebuild from the log replays. It is not safe for concurrent use.
type LogReader struct {
	to   uint64
	last uint64 // the last sequence of the filtered messages (0: unfiltered)
	done bool
	// part and of reduce each message to one partition's items.
	part, of int
	cons     jetstream.Consumer
	it       jetstream.MessagesContext
}

// ReadLog opens a LogReader on stream (EventsStream if empty) for the
// messages with sequences from..to that it still holds (from below the
// stream's first sequence starts there). Close it when done.
func ReadLog(ctx context.Context, js jetstream.JetStream, stream string, from, to uint64) (*LogReader, error) {
	return ReadPartitionLog(ctx, js, stream, from, to, 0, 1)
}

// ReadPartitionLog is ReadLog for partition part of of: it reads only the
// subjects the partition reads (PartitionFilterSubjects) and reduces each
// message to the partition's items (KeepPartition), as its consumer does.
// With of < 2 it is ReadLog.
func ReadPartitionLog(ctx context.Context, js jetstream.JetStream, stream string, from, to uint64, part, of int) (*LogReader, error) {
	if stream == "" {
		stream = EventsStream
	}
	r := &LogReader{to: to, part: part, of: of}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("read log %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read log %s: %w", stream, err)
	}
	from = max(from, info.State.FirstSeq, 1)
	filter := PartitionFilterSubjects(part, of)
	if filter != nil {
		// A filtered read must know where its messages end: with none
		// left to deliver, Next would wait for new ones.
		if r.last, err = LastPartitionSeq(ctx, s, part, of); err != nil {
			return nil, fmt.Errorf("read log %s: %w", stream, err)
		}
		if r.last < from {
			r.done = true
			return r, nil
		}
	}
	if info.State.Msgs == 0 || from > to || from > info.State.LastSeq {
		r.done = true
		return r, nil
	}
	r.cons, err = s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("read log %s: %w", stream, err)
	}
	if r.it, err = r.cons.Messages(jetstream.PullMaxMessages(500)); err != nil {
		return nil, fmt.Errorf("read log %s: %w", stream, err)
	}
	return r, nil
}

// Next returns the next message at or below the last sequence asked for,
// decoded (see DecodeMessage), or io.EOF.
func (r *LogReader) Next(ctx context.Context) (*IngestMessage, error) {
	if r.done {
		return nil, io.EOF
	}
	stop := context.AfterFunc(ctx, r.it.Stop)
	msg, err := r.it.Next()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read log: %w", err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	seq := md.Sequence.Stream
	if seq > r.to {
		r.done = true
		return nil, io.EOF
	}
	if seq == r.to || md.NumPending == 0 || r.last != 0 && seq >= r.last {
		r.done = true // nothing more is stored: do not wait for it
	}
	return DecodePartitionMessage(seq, msg.Subject(), msg.Data(), md.Timestamp.UnixMilli(), r.part, r.of), nil
}

// Close stops the reader.
func (r *LogReader) Close() {
	if r.it != nil {
		r.it.Stop()
	}
}
