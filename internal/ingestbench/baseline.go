package ingestbench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
)

// Baseline is a plain JetStream consumer of the pre-published stream.
type Baseline int

const (
	// BaselineAck only reads and acks each message.
	BaselineAck Baseline = iota
	// BaselineJSON also decodes each batch with encoding/json into
	// []map[string]any: what any consumer of the same JSON pays.
	BaselineJSON
)

// String names the baseline as the report does.
func (b Baseline) String() string {
	if b == BaselineJSON {
		return "plain consumer + encoding/json"
	}
	return "plain consumer, read and ack"
}

// RunBaseline consumes the whole pre-published stream with a fresh pull
// consumer (explicit acks, as segd's), and returns how long it took until
// the last sequence was acked.
func (e *Env) RunBaseline(ctx context.Context, kind Baseline) (time.Duration, error) {
	last := e.Published.LastSeq
	if last == 0 {
		return 0, fmt.Errorf("nothing published")
	}
	s, err := e.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 1000,
		// segd's consumer has the same prefetch (bus.ConsumerOptions).
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, err
	}
	defer s.DeleteConsumer(context.Background(), c.CachedInfo().Name)
	it, err := c.Messages(jetstream.PullMaxMessages(500))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, err
		}
		if kind == BaselineJSON {
			var items []map[string]any
			if err := json.Unmarshal(msg.Data(), &items); err != nil {
				return 0, fmt.Errorf("decode: %w", err)
			}
		}
		if err := msg.Ack(); err != nil {
			return 0, err
		}
		md, err := msg.Metadata()
		if err != nil {
			return 0, err
		}
		if md.Sequence.Stream >= last {
			return time.Since(t0), nil
		}
	}
}
