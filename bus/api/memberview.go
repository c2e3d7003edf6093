package api

import "time"

// MemberView is a user's membership of some segments, as one read sees it.
type MemberView struct {
	// AsOf is the last applied events stream sequence and segd's clock at
	// that step, read with the membership.
	AsOf AsOf
	// Segments are those asked for that are defined, in id order.
	Segments []SegmentView
	// Unknown are those asked for that are not defined, in the order asked.
	Unknown []string
	// Err, when set, is why the view could not be read at all (the user's
	// partition is owned by a host that did not answer in time: a 503
	// naming it); the service answers it as the request's error.
	Err error
}

// SegmentView is a user's membership of one segment.
type SegmentView struct {
	Segment string
	// State is one of the State* values; Revision the revision whose
	// membership Member answers, 0 when unknown.
	State    string
	Revision uint64
	// Served reports whether Member and Since answer; when false, Err says
	// why not (an *ingest.Error 503 naming the segment and its state).
	Served bool
	Member bool
	// Since is when the user entered the segment, for a member.
	Since time.Time
	Err   error
}
