package bus

import (
	"context"
	"fmt"
	"math"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	// HeaderDLQSize is the size of the original message's data in bytes.
	HeaderDLQSize = "Segd-Dlq-Size"
	// HeaderDLQTruncated marks a record that stands for a message too large
	// to copy whole: its data is only the first bytes of the original (at
	// most DeadLetterPrefix), and the value says what was left out.
	HeaderDLQTruncated = "Segd-Dlq-Truncated"
)

// DeadLetterPrefix is how many bytes of a message's data a record keeps
// when the message cannot be copied whole (see HeaderDLQTruncated).
const DeadLetterPrefix = 4096

// maxReason bounds the reason header: an error may quote input.
const maxReason = 1024

// DeadLetterConfig configures EnsureDeadLetters.
type DeadLetterConfig struct {
	// Stream is the stream name (default DeadLetterStream).
	Stream string
	// MaxAge is how long dead letters are kept (default 90 days). It is
	// also the deduplication window: a replay of the events stream does not
	// store a dead letter twice.
	MaxAge time.Duration
	// Replicas is the number of copies in a cluster (default 1).
	Replicas int
}

// DeadLetters publishes undecodable messages to the dead-letter stream.
type DeadLetters struct {
	js      jetstream.JetStream
	stream  string
	count   atomic.Uint64
	records atomic.Uint64
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
		Replicas:    max(cfg.Replicas, 1),
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

// Records is how many of them are records of a message too large to copy
// whole (see HeaderDLQTruncated).
func (d *DeadLetters) Records() uint64 { return d.records.Load() }

// Send stores a copy of msg, which is at stream sequence seq and is not a
// batch, with the reason. Its message id is the sequence, so that a
// redelivery or a replay stores it once. A message whose copy would not fit
// in a NATS message (the copy adds headers) is stored as a record instead:
// its headers, the first DeadLetterPrefix bytes of its data and its size.
func (d *DeadLetters) Send(ctx context.Context, msg jetstream.Msg, seq uint64, reason error) error {
	return d.send(ctx, msg, seq, reason, "")
}

// SendUnapplied stores a copy of msg, at stream sequence seq, that the
// consumer gave up applying, with the reason; like Send otherwise. It has
// its own message id, so that a message that is not a batch and also failed
// to apply has both dead letters.
func (d *DeadLetters) SendUnapplied(ctx context.Context, msg jetstream.Msg, seq uint64, reason error) error {
	return d.send(ctx, msg, seq, reason, "-unapplied")
}

func (d *DeadLetters) send(ctx context.Context, msg jetstream.Msg, seq uint64, reason error, idSuffix string) error {
	out := nats.NewMsg(DeadLetterSubjectPrefix + strings.TrimPrefix(msg.Subject(), "segd."))
	data := msg.Data()
	var own []string // the original headers that can be sent again
	for k, v := range msg.Headers() {
		if !strings.HasPrefix(k, "Nats-") && validHeaderKey(k) {
			own = append(own, k)
			out.Header[k] = v
		}
	}
	out.Header.Set(HeaderDLQReason, headerText(reason.Error(), maxReason))
	out.Header.Set(HeaderDLQSeq, strconv.FormatUint(seq, 10))
	out.Header.Set(HeaderDLQSubject, msg.Subject())
	out.Header.Set(HeaderDLQSize, strconv.Itoa(len(data)))
	out.Header.Set(nats.MsgIdHdr, "segd-events-"+strconv.FormatUint(seq, 10)+idSuffix)
	out.Data = data
	record := d.fit(out, own)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := d.js.PublishMsg(ctx, out)
	if err != nil {
		return fmt.Errorf("dead letter for seq %d: %w", seq, err)
	}
	if !ack.Duplicate {
		d.count.Add(1)
		if record {
			d.records.Add(1)
		}
	}
	return nil
}

// fit makes out fit in one message, turning it into a record if it must:
// original headers (own) beyond JetStream's header limit are dropped, data
// beyond the max payload is cut to its first DeadLetterPrefix bytes, and
// if that is still too large the original headers go too. It reports
// whether anything was left out, which HeaderDLQTruncated then says.
func (d *DeadLetters) fit(out *nats.Msg, own []string) bool {
	limit := int(d.js.Conn().MaxPayload())
	if limit <= 0 {
		limit = math.MaxInt
	}
	size := len(out.Data)
	var notes []string
	dropHeaders := func() {
		for _, k := range own {
			out.Header.Del(k)
		}
		own = nil
		notes = append(notes, "the original headers were dropped")
	}
	if len(own) > 0 && headerSize(out.Header) > maxHeaderBytes {
		dropHeaders()
	}
	if headerSize(out.Header)+len(out.Data)+64 > limit { // 64: room for the note
		out.Data = out.Data[:min(len(out.Data), DeadLetterPrefix)]
		if len(own) > 0 && headerSize(out.Header)+len(out.Data)+128 > limit {
			dropHeaders()
		}
		notes = append([]string{"data: kept the first " + strconv.Itoa(len(out.Data)) + " of " + strconv.Itoa(size) + " bytes"}, notes...)
	}
	if len(notes) == 0 {
		return false
	}
	out.Header.Set(HeaderDLQTruncated, strings.Join(notes, "; "))
	if room := limit - headerSize(out.Header); room < len(out.Data) {
		out.Data = out.Data[:max(room, 0)] // a tiny max payload
	}
	return true
}

// maxHeaderBytes is JetStream's limit on a stored message's headers.
const maxHeaderBytes = 64 << 10

// headerSize is the encoded size of h as nats.go sends it.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(textproto.TrimString(v)) + 4 // ": " and CRLF
		}
	}
	return n
}

// validHeaderKey reports whether nats.go accepts k as a header key: a
// header another client could send but this one refuses must not make the
// copy fail again and again.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 33 || c > 126 || strings.IndexByte(`"()/,:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// headerText makes s a header value of at most n bytes: one line, cut at a
// rune boundary.
func headerText(s string, n int) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
