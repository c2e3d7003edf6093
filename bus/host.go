package bus

import (
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

// ErrNotFound marks a request for something that does not exist; it is
// ingest.ErrNotFound, named here for the service's users.
var ErrNotFound = ingest.ErrNotFound

// IngestMessage is one message consumed from the events stream
// (ingest.Message).
type IngestMessage = ingest.Message

// StaticUpload sets the members of a static segment (ingest.StaticUpload).
type StaticUpload = ingest.StaticUpload

// Ingester applies consumed messages (ingest.Ingester).
type Ingester = ingest.Ingester

// MemberView is a user's membership of some segments, as one read sees it
// (api.MemberView).
type MemberView = api.MemberView

// SegmentView is a user's membership of one segment (api.SegmentView).
type SegmentView = api.SegmentView

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
