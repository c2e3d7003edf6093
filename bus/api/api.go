// Package api holds segd's request-reply wire contract: subjects, the JSON
// request and reply types of every endpoint, and the error body. The service
// (package bus) and the Go client (package bus/client) both use it, so that
// the two cannot drift apart.
package api

// ServiceName is the nats micro service name; `nats micro info segd` shows it.
const ServiceName = "segd"

// Group is the subject prefix of every endpoint.
const Group = "segd.v1"

// Endpoint subjects.
const (
	SubjectMemberCheck    = Group + ".member.check"
	SubjectMemberSegments = Group + ".member.segments"
	SubjectSegmentList    = Group + ".segment.list"
	SubjectSegmentCount   = Group + ".segment.count"
	SubjectStatus         = Group + ".status"
)

// EventsSubjectPrefix is where producers publish batches: segd.events.<anything>.
const EventsSubjectPrefix = "segd.events."

// MemberCheckRequest asks whether a user is in a segment.
type MemberCheckRequest struct {
	User    string `json:"user"`
	Segment string `json:"segment"`
}

// MemberCheckReply answers MemberCheckRequest.
type MemberCheckReply struct {
	Member bool `json:"member"`
}

// MemberSegmentsRequest asks which segments a user is in.
type MemberSegmentsRequest struct {
	User string `json:"user"`
}

// MemberSegmentsReply lists segment ids in ascending order; empty, not null,
// for a user in none (or never seen).
type MemberSegmentsReply struct {
	Segments []string `json:"segments"`
}

// SegmentListReply lists every segment.
type SegmentListReply struct {
	Segments []SegmentInfo `json:"segments"`
}

// SegmentInfo describes one segment as segment.list shows it.
type SegmentInfo struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Description string `json:"description,omitempty"`
	Size        uint64 `json:"size"`
	// Status is "active", or "failed" with Error saying why.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// EvalErrors counts events or profiles the rule's predicate could not
	// judge (an expr runtime error such as comparing a missing attribute);
	// they count as non-matches. LastEvalError describes the latest.
	EvalErrors    uint64 `json:"eval_errors,omitempty"`
	LastEvalError string `json:"last_eval_error,omitempty"`
}

// SegmentCountRequest asks for a segment's size.
type SegmentCountRequest struct {
	Segment string `json:"segment"`
}

// SegmentCountReply answers SegmentCountRequest.
type SegmentCountReply struct {
	Count uint64 `json:"count"`
}

// StatusReply reports ingest progress and health.
type StatusReply struct {
	Ready bool `json:"ready"`
	// LastSeq is the last JetStream stream sequence applied.
	LastSeq uint64 `json:"last_seq"`
	// Batches, Events and Profiles count what was applied.
	Batches  uint64 `json:"batches"`
	Events   uint64 `json:"events"`
	Profiles uint64 `json:"profiles"`
	// InvalidItems counts skipped items; FirstInvalid describes the first.
	InvalidItems uint64 `json:"invalid_items"`
	FirstInvalid string `json:"first_invalid,omitempty"`
	// Uploads counts static segment uploads applied; RejectedUploads those
	// for a segment that was not static when they were applied.
	Uploads         uint64 `json:"uploads"`
	RejectedUploads uint64 `json:"rejected_uploads,omitempty"`
	// TooNew counts events rejected for being further ahead of the clock
	// than the allowed skew.
	TooNew uint64 `json:"too_new"`
	// NotBatches counts messages that were not batches at all.
	NotBatches   uint64 `json:"not_batches"`
	LastNotBatch string `json:"last_not_batch,omitempty"`
	// Users is the number of distinct users seen.
	Users uint64 `json:"users"`
	// Clock is the engine's current time (RFC 3339), which moves windows.
	Clock string `json:"clock"`
}

// Error codes, in the Nats-Service-Error-Code header and the error body.
const (
	CodeBadRequest  = "400"
	CodeNotFound    = "404"
	CodeTooLarge    = "413"
	CodeUnavailable = "503"
	CodeInternal    = "500"
)

// ErrorBody is the JSON body of an error reply. Its code and description
// repeat the micro error headers; Field names the request field at fault.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of ErrorBody.
type ErrorDetail struct {
	Code        string `json:"code"`
	Description string `json:"description"`
	Field       string `json:"field,omitempty"`
}

// Item is one element of an ingest batch as producers write it: an event
// (Event set), a profile update (Profile set), or both for the same user.
// Time is RFC 3339 or Unix milliseconds; omitted, it is the stream timestamp.
// A batch is a JSON array of items, or NDJSON; see docs/events.md.
type Item struct {
	User    string         `json:"user"`
	Event   string         `json:"event,omitempty"`
	Time    any            `json:"time,omitempty"`
	Props   map[string]any `json:"props,omitempty"`
	Profile map[string]any `json:"profile,omitempty"`
}
