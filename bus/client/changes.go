package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// ChangeMsg is one change of the feed with where it sits in SEGD_CHANGES.
type ChangeMsg struct {
	api.Change
	// StreamSeq is the SEGD_CHANGES sequence of the message holding the
	// change (an api.ChangeBatch), Index its place in the message (the
	// message's Enter, then its Exit) and Count the message's changes:
	// (StreamSeq, Index) identifies a change. EventsSeq is the SEGD_EVENTS
	// sequence whose application caused it.
	StreamSeq, EventsSeq uint64
	Index, Count         int
	// Delivered counts deliveries of this message (above 1: a retry).
	Delivered uint64
}

// ChangeConsumerOptions configures ConsumeChanges.
type ChangeConsumerOptions struct {
	// Durable names the consumer on the server: it remembers what was
	// acked, so a restarted consumer resumes after it. Empty makes an
	// ephemeral consumer that is forgotten when it stops.
	Durable string
	// Segments restricts the feed to these segments (default: all).
	Segments []string
	// DeliverNew starts a new consumer at the feed's end instead of its
	// oldest retained change (the feed keeps 7 days). It does not affect a
	// durable that already exists.
	DeliverNew bool
	// StartTime, when set, starts a new consumer at the first change
	// stored at or after it instead (it does not affect a durable that
	// already exists).
	StartTime time.Time
	// AckWait is how long a handler may take before the change is
	// redelivered (default 30s).
	AckWait time.Duration
	// RetryDelay is the wait before a change whose handler failed is
	// delivered again (default 1s).
	RetryDelay time.Duration
}

// ChangeConsumer delivers the change feed to a handler. Stop it with Stop.
type ChangeConsumer struct {
	cc   jetstream.ConsumeContext
	cons jetstream.Consumer
}

// ConsumeChanges delivers the change feed to handle, one change at a time,
// in the order segd published them. A message of the feed (an
// api.ChangeBatch) is acked (and the ack confirmed) once handle returned nil
// for each of its changes; on an error the same change is delivered again
// after RetryDelay, before any later one (the changes of the message
// handled before it are not repeated). Delivery is at least once: a crash
// before the message is acked repeats its changes, so handlers should be
// idempotent. With a durable name, a consumer that
// stops and starts again resumes after the last change it acked.
func ConsumeChanges(ctx context.Context, js jetstream.JetStream, opts ChangeConsumerOptions, handle func(ChangeMsg) error) (*ChangeConsumer, error) {
	if handle == nil {
		return nil, errors.New("client.ConsumeChanges: nil handler")
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       opts.Durable,
		Description:   "segd change feed consumer",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxAckPending: 1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if opts.DeliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	if !opts.StartTime.IsZero() {
		t := opts.StartTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	for _, s := range opts.Segments {
		cfg.FilterSubjects = append(cfg.FilterSubjects, api.ChangesSubjectPrefix+s)
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{api.ChangesSubjectPrefix + ">"}
	}
	var cons jetstream.Consumer
	var err error
	if opts.Durable != "" {
		// An existing durable keeps its position; only its filter may change.
		cons, err = js.Consumer(ctx, api.ChangesStream, opts.Durable)
		if err == nil {
			info := cons.CachedInfo()
			cfg.DeliverPolicy, cfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
			cons, err = js.UpdateConsumer(ctx, api.ChangesStream, cfg)
		} else if errors.Is(err, jetstream.ErrConsumerNotFound) {
			cons, err = js.CreateConsumer(ctx, api.ChangesStream, cfg)
		}
	} else {
		cons, err = js.CreateConsumer(ctx, api.ChangesStream, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("segd change feed (%s): %w", api.ChangesStream, err)
	}
	// A message holds many changes; the handler takes them one at a time.
	// After a failure the message comes again: the changes of it already
	// handled by this consumer are skipped (done), so a retry repeats none.
	var done struct {
		seq uint64
		n   int
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var b api.ChangeBatch
		if err := json.Unmarshal(m.Data(), &b); err != nil || b.Segment == "" {
			_ = m.Term() // not a change message: never deliverable
			return
		}
		cm := ChangeMsg{Count: len(b.Enter) + len(b.Exit)}
		if md, err := m.Metadata(); err == nil {
			cm.StreamSeq, cm.Delivered = md.Sequence.Stream, md.NumDelivered
		}
		cm.EventsSeq, _ = strconv.ParseUint(m.Headers().Get(api.HeaderEventsSeq), 10, 64)
		if done.seq != cm.StreamSeq {
			done.seq, done.n = cm.StreamSeq, 0
		}
		// Keep the message ours while a long one is handled.
		progress := time.Now().Add(opts.AckWait / 3)
		for i := done.n; i < cm.Count; i++ {
			cm.Index = i
			cm.Change = api.Change{Segment: b.Segment, Time: b.Time, Change: api.ChangeEnter}
			if i < len(b.Enter) {
				cm.User = b.Enter[i]
			} else {
				cm.User, cm.Change.Change = b.Exit[i-len(b.Enter)], api.ChangeExit
			}
			if err := handle(cm); err != nil {
				_ = m.NakWithDelay(opts.RetryDelay)
				return
			}
			done.n = i + 1
			if time.Now().After(progress) {
				_ = m.InProgress()
				progress = time.Now().Add(opts.AckWait / 3)
			}
		}
		_ = m.DoubleAck(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("segd change feed: %w", err)
	}
	c := &ChangeConsumer{cc: cc, cons: cons}
	context.AfterFunc(ctx, c.Stop)
	return c, nil
}

// Stop stops delivering and waits until the change in hand is handled.
func (c *ChangeConsumer) Stop() {
	c.cc.Drain()
	<-c.cc.Closed()
}

// Pending returns how many changes wait for this consumer on the server.
func (c *ChangeConsumer) Pending(ctx context.Context) (uint64, error) {
	info, err := c.cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
