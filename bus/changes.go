package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	// MaxConsumers caps the consumers on the stream (default
	// DefaultMaxChangeConsumers). Readers create them (a durable or an
	// ephemeral one per feed they read): the server refuses one past the
	// cap with "maximum consumers limit reached", so that no reader can
	// create them until JetStream runs out of memory or disk. segd reads
	// the stream without a consumer.
	MaxConsumers int
}

// DefaultMaxChangeConsumers is ChangesStreamConfig.MaxConsumers' default.
const DefaultMaxChangeConsumers = 1000

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
	if cfg.MaxConsumers <= 0 {
		cfg.MaxConsumers = DefaultMaxChangeConsumers
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:         api.ChangesStream,
		Description:  "segd change feed: users entering and leaving segments, on segd.changes.<segment>",
		Subjects:     []string{api.ChangesSubjectPrefix + ">"},
		Retention:    jetstream.LimitsPolicy,
		Storage:      jetstream.FileStorage,
		MaxAge:       cfg.MaxAge,
		Duplicates:   cfg.Duplicates,
		Replicas:     cfg.Replicas,
		Discard:      jetstream.DiscardOld,
		MaxConsumers: cfg.MaxConsumers,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", api.ChangesStream, err)
	}
	return s, nil
}

// FeedResumePoint returns the events stream sequence recorded on the last
// message in SEGD_CHANGES, for ChangeFeedOptions.ResumeAfter. When the stream
// has no message to read it from (it is new, or every change aged out),
// it returns fallback: start the feed at the events stream's end rather
// than announce every current member again.
//
// It is exact: the feed stores its messages strictly in order (a message
// in flight is refused unless its predecessor is the stream's last; see
// publish) and retries a failed one before any later one, and segd writes
// no snapshot past a sequence whose changes are not all stored
// (WaitCovered), so the replay at the next start regenerates every change
// not stored.
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

// FeedChange is one change of a step handed to Add.
type FeedChange struct {
	Segment, User string
	Enter         bool
}

// Add hands over the n changes of one step of the engine: all caused by
// the events stream sequence seq (or, for a move of the clock, the last one
// applied before it) at time t, grouped by segment. change(i) returns the
// i-th. Changes of one segment become one message, or several of at most
// MaxMessage bytes. Add returns once every message is queued; while the
// backlog is at its bound it waits for JetStream to store older ones
// (until Closing's grace has passed).
func (f *ChangeFeed) Add(seq uint64, t time.Time, n int, change func(i int) FeedChange) {
	if n == 0 {
		return
	}
	f.mu.Lock()
	if seq == f.stepSeq && f.stepped {
		f.step++
	} else {
		f.stepSeq, f.step, f.stepped = seq, 0, true
	}
	step := f.step
	f.mu.Unlock()
	if seq < f.opts.ResumeAfter {
		f.suppressed.Add(uint64(n))
		return
	}
	ts := t.Format(time.RFC3339Nano)
	var b api.ChangeBatch
	size := 0
	emit := func() {
		if len(b.Enter)+len(b.Exit) > 0 {
			f.encode(seq, step, &b)
		}
		b.Enter, b.Exit, size = nil, nil, 0
	}
	for i := range n {
		c := change(i)
		if c.Segment != b.Segment {
			emit()
			b.Segment, b.Time = c.Segment, ts
		}
		if size > 0 && size+len(c.User)+4 > f.opts.MaxMessage {
			emit()
		}
		size += len(c.User) + 4
		if c.Enter {
			b.Enter = append(b.Enter, c.User)
		} else {
			b.Exit = append(b.Exit, c.User)
		}
	}
	emit()
}

// encode turns one batch into a message and queues it. A batch whose JSON
// exceeds the max payload (user ids full of characters JSON escapes) is
// halved until it fits; a single change that cannot fit is counted and
// logged.
func (f *ChangeFeed) encode(seq uint64, step int, b *api.ChangeBatch) {
	data, err := json.Marshal(b)
	n := len(b.Enter) + len(b.Exit)
	if err != nil || len(data)+1024 > f.opts.MaxPayload {
		if n == 1 {
			f.unpublishable.Add(1)
			f.opts.Logger.Error("change feed: a change is too large for one NATS message and is not published",
				"segment", b.Segment, "bytes", len(data), "max_payload", f.opts.MaxPayload)
			return
		}
		all := append(append([]string(nil), b.Enter...), b.Exit...)
		enters := len(b.Enter)
		half := n / 2
		first := api.ChangeBatch{Segment: b.Segment, Time: b.Time, Enter: all[:min(half, enters)], Exit: all[min(half, enters):half]}
		second := api.ChangeBatch{Segment: b.Segment, Time: b.Time, Enter: all[half:max(half, enters)], Exit: all[max(half, enters):]}
		f.encode(seq, step, &first)
		f.encode(seq, step, &second)
		return
	}
	msg := &nats.Msg{Subject: api.ChangesSubjectPrefix + b.Segment, Data: data, Header: nats.Header{
		jetstream.MsgIDHeader: {changeMsgID(seq, step, b)},
		api.HeaderEventsSeq:   {strconv.FormatUint(seq, 10)},
		api.HeaderChanges:     {strconv.Itoa(n)},
	}}
	if p := f.opts.Partition; p != "" {
		msg.Header.Set(jetstream.MsgIDHeader, p+":"+msg.Header.Get(jetstream.MsgIDHeader))
		msg.Header.Set(HeaderPartition, p)
	}
	f.enqueue(&feedMsg{seq: seq, changes: n, msg: msg})
}

// changeMsgID is a change message's Nats-Msg-Id: the events sequence, the
// number of the step among those of that sequence (an applied message, then
// moves of the clock), the segment, and a hash of the users who entered and
// left, but not the time (a replay applies at another time). A user is in
// at most one message of a step and segment, so the messages of one step
// differ by their users. A replay of the same events regenerates the same
// messages, so JetStream stores each once within the duplicate window; a
// message with other changes never shares an id, so no change is dropped
// as a duplicate of another.
func changeMsgID(seq uint64, step int, b *api.ChangeBatch) string {
	h := sha256.New()
	for _, u := range b.Enter {
		h.Write([]byte(u))
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
	for _, u := range b.Exit {
		h.Write([]byte(u))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return strconv.FormatUint(seq, 10) + "." + strconv.Itoa(step) + ":" + b.Segment + ":" + hex.EncodeToString(sum[:16])
}
