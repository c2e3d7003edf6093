package bus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterStream is the JetStream stream that keeps the messages of the
// events stream that are not batches, for a person to look at.
const DeadLetterStream = "SEGD_DLQ"

// DeadLetterSubjectPrefix is where dead letters are published: the original
// subject without its "segd." prefix follows, e.g. segd.dlq.events.3.
const DeadLetterSubjectPrefix = "segd.dlq."

// Headers of a dead letter, besides a copy of the original headers.
const (
	// HeaderDLQReason says why the message is not a batch.
	HeaderDLQReason = "Segd-Dlq-Reason"
	// HeaderDLQSeq and HeaderDLQSubject are the message's SEGD_EVENTS
	// sequence and subject.
	HeaderDLQSeq     = "Segd-Events-Seq"
	HeaderDLQSubject = "Segd-Events-Subject"
)

// DeadLetterConfig configures EnsureDeadLetters.
type DeadLetterConfig struct {
	// Stream is the stream name (default DeadLetterStream).
	Stream string
	// MaxAge is how long dead letters are kept (default 90 days). It is
	// also the deduplication window: a replay of the events stream does not
	// store a dead letter twice.
	MaxAge time.Duration
}

// DeadLetters publishes undecodable messages to the dead-letter stream.
type DeadLetters struct {
	js     jetstream.JetStream
	stream string
	count  atomic.Uint64
}

// EnsureDeadLetters creates (or updates) the dead-letter stream.
func EnsureDeadLetters(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig) (*DeadLetters, error) {
	if cfg.Stream == "" {
		cfg.Stream = DeadLetterStream
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 90 * 24 * time.Hour
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "segd: messages of SEGD_EVENTS that are not batches (reason in the Segd-Dlq-Reason header)",
		Subjects:    []string{DeadLetterSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.MaxAge,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", cfg.Stream, err)
	}
	return &DeadLetters{js: js, stream: cfg.Stream}, nil
}

// Stream is the dead-letter stream's name.
func (d *DeadLetters) Stream() string { return d.stream }

// Count is the number of dead letters this process published.
func (d *DeadLetters) Count() uint64 { return d.count.Load() }

// Send stores a copy of msg, which is at stream sequence seq, with the
// reason. Its message id is the sequence, so that a redelivery or a replay
// stores it once.
func (d *DeadLetters) Send(ctx context.Context, msg jetstream.Msg, seq uint64, reason error) error {
	out := nats.NewMsg(DeadLetterSubjectPrefix + strings.TrimPrefix(msg.Subject(), "segd."))
	for k, v := range msg.Headers() {
		if !strings.HasPrefix(k, "Nats-") {
			out.Header[k] = v
		}
	}
	out.Header.Set(HeaderDLQReason, reason.Error())
	out.Header.Set(HeaderDLQSeq, strconv.FormatUint(seq, 10))
	out.Header.Set(HeaderDLQSubject, msg.Subject())
	out.Header.Set(nats.MsgIdHdr, "segd-events-"+strconv.FormatUint(seq, 10))
	out.Data = msg.Data()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := d.js.PublishMsg(ctx, out)
	if err != nil {
		return fmt.Errorf("dead letter for seq %d: %w", seq, err)
	}
	if !ack.Duplicate {
		d.count.Add(1)
	}
	return nil
}
