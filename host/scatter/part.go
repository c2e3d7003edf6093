package scatter

import (
	"context"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
)

// Part is one partition as the merged answers need it: what one engine
// answers today (bus.Membership, bus.SegmentStore, bus.Analyzer), over the
// partition's users only and with the partition's local dense ids, plus
// what user.get and segment.history read beside them. Local is the Part of
// an engine and an analysis index in this process.
//
// The merge relies on these, which one engine gives:
//   - SegmentPage returns local ids in ascending order, and
//     SegmentBitmaps local ids below its universe: a partition's users are
//     the local ids 0..universe-1.
//   - Analyses answer with explicit From and To as asked, series, steps,
//     cohorts and segments in the order of the request, and every count a
//     count of the partition's users or events (so that partitions add).
//   - Location and Now are the same for every partition (one clock and
//     time zone per stream).
//
// The methods without a context (those of bus.Membership and
// bus.SegmentStore) must bound their own wait: a Part across the network
// answers an error past the request timeout rather than block the merge.
//
// Errors carry their code as the service reads it (an *ingest.Error, an
// error wrapping ingest.ErrNotFound, a context error); the merged answer
// keeps it.
type Part interface {
	bus.Membership
	bus.SegmentStore
	bus.Analyzer
	// UserGet answers user.get for a user of this partition.
	UserGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error)
	// HistoryStart is the first calendar day (YYYY-MM-DD) of the
	// segment's history recorded in this partition, "" when none.
	HistoryStart(segment string) string
	// UnavailableSegments lists, in id order, the segments whose
	// membership the partition does not serve now.
	UnavailableSegments() []string
}
