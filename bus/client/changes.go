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
	// StreamSeq is the message's SEGD_CHANGES sequence; EventsSeq the
	// SEGD_EVENTS sequence whose application caused the change.
	StreamSeq, EventsSeq uint64
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
// in the order segd published them. A change is acked (and the ack
// confirmed) once handle returns nil; on an error the same change is
// delivered again after RetryDelay, before any later one. Delivery is at
// least once: a crash between handling and acking repeats a change, so
// handlers should be idempotent. With a durable name, a consumer that
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
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var cm ChangeMsg
		if err := json.Unmarshal(m.Data(), &cm.Change); err != nil {
			_ = m.Term() // not a change: never deliverable
			return
		}
		if md, err := m.Metadata(); err == nil {
			cm.StreamSeq, cm.Delivered = md.Sequence.Stream, md.NumDelivered
		}
		cm.EventsSeq, _ = strconv.ParseUint(m.Headers().Get(api.HeaderEventsSeq), 10, 64)
		if err := handle(cm); err != nil {
			_ = m.NakWithDelay(opts.RetryDelay)
			return
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
