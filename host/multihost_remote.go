package host

import (
	"context"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/ingest"
)

// unowned is the Part of a partition this host cannot reach: every
// question about it answers 503 naming it, so that a merge over it fails
// whole instead of returning a partial sum. (Until package remotepart
// answers for partitions owned elsewhere, it stands in for them.)
type unowned struct {
	n, of int
	loc   *time.Location
	clock func() time.Time
}

var _ scatter.Part = unowned{}

func (u unowned) err() error {
	return &ingest.Error{Code: api.CodeUnavailable, Err: fmt.Errorf("partition %d of %d is not served by this host (ownership is moving, or its owner cannot be reached)", u.n, u.of)}
}

func (u unowned) IsMember(string, string) (bool, error) { return false, u.err() }
func (u unowned) MemberSince(string, string) (bool, time.Time, error) {
	return false, time.Time{}, u.err()
}
func (u unowned) UserSegments(string) []string            { return nil }
func (u unowned) UserMemberships(string) []api.Membership { return nil }
func (u unowned) Segments() []api.SegmentInfo             { return nil }
func (u unowned) SegmentCount(string) (uint64, error)     { return 0, u.err() }
func (u unowned) Status() api.StatusReply {
	return api.StatusReply{Ready: false}
}
func (u unowned) MemberView(user string, segments []string) bus.MemberView {
	v := bus.MemberView{}
	for _, s := range segments {
		v.Segments = append(v.Segments, api.SegmentView{Segment: s, State: api.StateReplaying, Err: u.err()})
	}
	return v
}
func (u unowned) SegmentDetail(string) (api.SegmentGetReply, error) {
	return api.SegmentGetReply{}, u.err()
}
func (u unowned) SegmentStatic(string) (bool, error) { return false, u.err() }
func (u unowned) SegmentPage(string, uint32, int) ([]uint32, bool, error) {
	return nil, false, u.err()
}
func (u unowned) SegmentBitmaps([]string) ([]*roaring.Bitmap, uint32, error) {
	return nil, 0, u.err()
}
func (u unowned) UserNames(ids []uint32) []string { return make([]string, len(ids)) }
func (u unowned) History(string, time.Time, time.Time) ([]api.HistoryDay, error) {
	return nil, u.err()
}
func (u unowned) Location() *time.Location { return u.loc }
func (u unowned) Now() time.Time           { return u.clock() }
func (u unowned) AnalyzeEvents(context.Context, *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	return nil, u.err()
}
func (u unowned) AnalyzeFunnel(context.Context, *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	return nil, u.err()
}
func (u unowned) AnalyzeRetention(context.Context, *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	return nil, u.err()
}
func (u unowned) AnalyzeTrend(context.Context, *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	return nil, u.err()
}
func (u unowned) UserGet(context.Context, *api.UserGetRequest) (*api.UserGetReply, error) {
	return nil, u.err()
}
func (u unowned) HistoryStart(string) string    { return "" }
func (u unowned) UnavailableSegments() []string { return nil }
