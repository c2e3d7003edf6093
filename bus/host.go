package bus

import (
	"context"
	"errors"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/rules"
)

// ErrNotFound marks a request for something that does not exist, such as an
// unknown segment; the service answers it with 404. Wrap it with the details:
// fmt.Errorf("segment %q is not defined: %w", id, bus.ErrNotFound).
var ErrNotFound = errors.New("not found")

// IngestMessage is one message consumed from the events stream.
type IngestMessage struct {
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
	Apply(ctx context.Context, msg *IngestMessage) error
}

// Membership answers the membership endpoints. Its methods are called from
// many goroutines and must not wait for ingest.
type Membership interface {
	// IsMember reports whether user is in segment. A user never seen is in
	// no segment; an unknown segment is an error wrapping ErrNotFound.
	IsMember(user, segment string) (bool, error)
	// MemberSince is IsMember with the time the user entered the segment.
	MemberSince(user, segment string) (bool, time.Time, error)
	// UserSegments returns the ids of the user's segments in ascending order.
	UserSegments(user string) []string
	// UserMemberships returns the user's segments in ascending order of id
	// with the time the user entered each.
	UserMemberships(user string) []api.Membership
	// Segments describes every segment, ordered by id.
	Segments() []api.SegmentInfo
	// SegmentCount returns a segment's size, or an error wrapping ErrNotFound.
	SegmentCount(segment string) (uint64, error)
	// Status reports ingest progress.
	Status() api.StatusReply
	// MemberView answers member.check and member.segments: the user's
	// membership of the segments (nil: every segment), with each one's
	// state and the point of the log the answer reflects, read at one
	// instant (docs/operations.md, "The membership contract").
	MemberView(user string, segments []string) MemberView
}

// MemberView is a user's membership of some segments, as one read sees it.
type MemberView struct {
	// AsOf is the last applied events stream sequence and segd's clock at
	// that step, read with the membership.
	AsOf api.AsOf
	// Segments are those asked for that are defined, in id order.
	Segments []SegmentView
	// Unknown are those asked for that are not defined, in the order asked.
	Unknown []string
}

// SegmentView is a user's membership of one segment.
type SegmentView struct {
	Segment string
	// State is one of the api.State* values; Revision the revision whose
	// membership Member answers, 0 when unknown.
	State    string
	Revision uint64
	// Served reports whether Member and Since answer; when false, Err says
	// why not (a *Error 503 naming the segment and its state).
	Served bool
	Member bool
	// Since is when the user entered the segment, for a member.
	Since time.Time
	Err   error
}
