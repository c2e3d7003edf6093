// Package ingest holds what the engine and the bus share about consumed
// messages and their errors: the message type, the interface that applies
// messages, and the errors that carry a reply code. It knows no NATS, so
// that the engine can be built, tested and linked without it; bus (the
// NATS side) and host (the engine side) both import it.
package ingest

import (
	"context"
	"errors"

	"github.com/segd/segd/rules"
)

// ErrNotFound marks a request for something that does not exist, such as an
// unknown segment; the service answers it with 404. Wrap it with the details:
// fmt.Errorf("segment %q is not defined: %w", id, ingest.ErrNotFound).
var ErrNotFound = errors.New("not found")

// ErrNotBatch reports an ingest message that is not a batch at all: empty, not
// JSON, or a JSON array that is malformed. Such a message is counted and acked
// so that it cannot block the stream.
var ErrNotBatch = errors.New("not a batch")

// Message is one message consumed from the events stream.
type Message struct {
	// Seq is the JetStream stream sequence of the message.
	Seq uint64
	// Subject is the subject it was published on.
	Subject string
	// Time is the stream timestamp in Unix milliseconds.
	Time int64
	// Batch is the decoded content, valid when Err is nil.
	Batch rules.Batch
	// Upload, when set, replaces or extends a static segment's members
	// instead of carrying a batch: uploads travel through the events stream
	// so that a replay rebuilds static segments too.
	Upload *StaticUpload
	// Err is non-nil (wrapping ErrNotBatch) when the message is not a batch.
	Err error
}

// StaticUpload sets the members of a static segment (one with no rule).
type StaticUpload struct {
	Segment string
	Users   []string
	// Replace makes Users the whole membership; otherwise they are added.
	Replace bool
	// Invalid counts the ids refused (not valid UTF-8, or empty), which are
	// not in Users; FirstInvalid describes the first. The engine counts
	// them as invalid items.
	Invalid      int
	FirstInvalid string
}

// Ingester applies consumed messages. Apply returns once the message has been
// applied (or, when it is not a batch, counted); the consumer acks it only
// then. An error from Apply leaves the message unacked for redelivery.
type Ingester interface {
	Apply(ctx context.Context, msg *Message) error
}

// Error is an error with its reply code, for work that fails with something
// other than a 404 or a 500: a 400 found only once the work runs (Field
// names the request field), a 409, a 413, a 503.
type Error struct {
	// Code is one of the api.Code* values.
	Code string
	// Field names the request field at fault, for a 400.
	Field string
	// Err says what went wrong; its text is the reply's description.
	Err error
}

// Error returns the description.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }
