package host

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/scatter"
)

// slot is one partition's place in a multi-host front's Scatter
// (multihost.go): the partition's Local Part while this host runs it, a
// remote Part otherwise. It is swapped under concurrent requests: each
// call reads the current Part once, so a request sees one Part or the
// other, never a half-swapped one, and a merge over several slots that
// meets a Part that cannot answer fails whole (503 naming the partition).
type slot struct {
	cur atomic.Pointer[partBox]
}

// partBox holds a Part for atomic.Pointer (an interface is two words).
type partBox struct{ scatter.Part }

func newSlot(p scatter.Part) *slot {
	s := &slot{}
	s.set(p)
	return s
}

// set makes p the partition's Part from now on.
func (s *slot) set(p scatter.Part) { s.cur.Store(&partBox{p}) }

// get is the current Part.
func (s *slot) get() scatter.Part { return s.cur.Load().Part }

var _ scatter.Part = (*slot)(nil)

func (s *slot) IsMember(user, segment string) (bool, error) { return s.get().IsMember(user, segment) }
func (s *slot) MemberSince(user, segment string) (bool, time.Time, error) {
	return s.get().MemberSince(user, segment)
}
func (s *slot) UserSegments(user string) []string { return s.get().UserSegments(user) }
func (s *slot) UserMemberships(user string) []api.Membership {
	return s.get().UserMemberships(user)
}
func (s *slot) Segments() []api.SegmentInfo { return s.get().Segments() }
func (s *slot) SegmentCount(segment string) (uint64, error) {
	return s.get().SegmentCount(segment)
}
func (s *slot) Status() api.StatusReply { return s.get().Status() }
func (s *slot) MemberView(user string, segments []string) bus.MemberView {
	return s.get().MemberView(user, segments)
}
func (s *slot) SegmentDetail(segment string) (api.SegmentGetReply, error) {
	return s.get().SegmentDetail(segment)
}
func (s *slot) SegmentStatic(segment string) (bool, error) { return s.get().SegmentStatic(segment) }
func (s *slot) SegmentPage(segment string, from uint32, limit int) ([]uint32, bool, error) {
	return s.get().SegmentPage(segment, from, limit)
}
func (s *slot) SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error) {
	return s.get().SegmentBitmaps(segments)
}
func (s *slot) UserNames(ids []uint32) ([]string, error) { return s.get().UserNames(ids) }
func (s *slot) History(segment string, from, to time.Time) ([]api.HistoryDay, error) {
	return s.get().History(segment, from, to)
}
func (s *slot) Location() *time.Location { return s.get().Location() }
func (s *slot) Now() time.Time           { return s.get().Now() }
func (s *slot) AnalyzeEvents(ctx context.Context, r *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	return s.get().AnalyzeEvents(ctx, r)
}
func (s *slot) AnalyzeFunnel(ctx context.Context, r *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	return s.get().AnalyzeFunnel(ctx, r)
}
func (s *slot) AnalyzeRetention(ctx context.Context, r *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	return s.get().AnalyzeRetention(ctx, r)
}
func (s *slot) AnalyzeTrend(ctx context.Context, r *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	return s.get().AnalyzeTrend(ctx, r)
}
func (s *slot) UserGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error) {
	return s.get().UserGet(ctx, r)
}
func (s *slot) HistoryStart(segment string) string { return s.get().HistoryStart(segment) }
func (s *slot) UnavailableSegments() []string      { return s.get().UnavailableSegments() }
