package remotepart

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/ingest"
)

// Options configures New.
type Options struct {
	// Location is the stream's time zone (every partition's): Location()
	// answers it, and times in replies come back in it. Required.
	Location *time.Location
	// Clock is segd's clock, which Now() reads (default time.Now).
	Clock func() time.Time
	// Forward bounds each call: MaxWait is how long a call waits for the
	// partition to have an owner that answers (default 5s), after which
	// it is a 503 naming the partition; AttemptTimeout bounds one request
	// (default 2s). A call with a context also ends with it.
	Forward cluster.ForwardOptions
	// SlowTimeout bounds one request of the ops that read the whole
	// partition (analyses, user.get, set algebra's bitmaps) when the
	// context has no deadline (default 30s, the service's request
	// timeout); with a deadline, the deadline bounds it.
	SlowTimeout time.Duration
	// Segments, if set, lists the segment ids this host knows (every
	// partition has the same rules). While the owner cannot be reached,
	// Segments and UnavailableSegments report these, and those last seen
	// from the owner, not served.
	Segments func() []string
	// MaxReply bounds a reply reassembled from chunks (default 64 MiB):
	// past it the call is a 413 naming the partition.
	MaxReply int
}

// Default bounds.
const (
	DefaultMaxWait     = 5 * time.Second
	DefaultAttempt     = 2 * time.Second
	DefaultSlowTimeout = 30 * time.Second
	DefaultMaxReply    = 64 << 20
)

// userNamesBatch bounds the ids of one user-names request (16 KiB of
// request; the names come back chunked if they must).
const userNamesBatch = 4096

// part is the scatter.Part of partition n, owned by another host.
type part struct {
	nc    *nats.Conn
	n, np int
	opts  Options

	mu sync.Mutex
	// known are the segment ids last answered by Segments or
	// UnavailableSegments: while the owner cannot be reached they are
	// reported unavailable.
	known []string
}

// New returns the Part of partition n of partitions, whose every method is
// an internal request to the partition's owner (Serve on that host).
func New(nc *nats.Conn, n, partitions int, opts Options) scatter.Part {
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Forward.MaxWait <= 0 {
		opts.Forward.MaxWait = DefaultMaxWait
	}
	if opts.Forward.AttemptTimeout <= 0 {
		opts.Forward.AttemptTimeout = DefaultAttempt
	}
	if opts.SlowTimeout <= 0 {
		opts.SlowTimeout = DefaultSlowTimeout
	}
	if opts.MaxReply <= 0 {
		opts.MaxReply = DefaultMaxReply
	}
	return &part{nc: nc, n: n, np: partitions, opts: opts}
}

var _ scatter.Part = (*part)(nil)

// call sends op with body to the owner and returns the reply, or the
// error as the owner's Part returned it (fromStatus). A call whose
// context ends returns the context's error.
func (p *part) call(ctx context.Context, op string, body []byte) ([]byte, error) {
	return p.callChunked(ctx, op, body, largeOps[op])
}

// largeOps often have replies past one message (bitmaps, names, whole
// lists, analyses): they ask for chunks at once, on an inbox of their own.
// The others take one message, quicker, and ask again in chunks only if
// the reply did not fit (cluster.ForwardOptions.Large).
var largeOps = map[string]bool{opSegments: true, opStatus: true, opSegmentBitmaps: true, opUserNames: true,
	opEvents: true, opFunnel: true, opRetention: true, opTrend: true, opUserGet: true}

// callChunked is call, asking for chunks at once if large.
func (p *part) callChunked(ctx context.Context, op string, body []byte, large bool) ([]byte, error) {
	fo := p.opts.Forward
	fo.MaxReply, fo.Large = p.opts.MaxReply, large
	if slices.Contains(slowOps, op) {
		// Its own timeout bounds a request that reads a whole partition,
		// or the caller's deadline.
		fo.AttemptTimeout = p.opts.SlowTimeout
		if dl, ok := ctx.Deadline(); ok {
			fo.AttemptTimeout = max(time.Until(dl), time.Millisecond)
		}
	}
	rep, err := cluster.Forward(ctx, p.nc, p.n, op, body, fo)
	if err == nil {
		return rep, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	return nil, fromStatus(err)
}

// callJSON sends req as JSON and decodes the reply into rep.
func (p *part) callJSON(ctx context.Context, op string, req, rep any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("remotepart: encode %s: %w", op, err)
	}
	data, err := p.call(ctx, op, body)
	if err != nil {
		return err
	}
	return decodeJSON(data, rep)
}

// bounded is the context of a method without one: the wait for an owner
// and an attempt bound it.
func (p *part) bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), p.opts.Forward.MaxWait+p.opts.Forward.AttemptTimeout+time.Second)
}

// quick calls op without a caller's context.
func (p *part) quick(op string, req, rep any) error {
	ctx, cancel := p.bounded()
	defer cancel()
	return p.callJSON(ctx, op, req, rep)
}

// unreachable is the error of a method without an error return: it is a
// 503 naming the partition.
func (p *part) unreachable(err error) error {
	return &ingest.Error{Code: api.CodeUnavailable, Err: fmt.Errorf("partition %d of %d: %v", p.n, p.np, err)}
}

// IsMember implements bus.Membership.
func (p *part) IsMember(user, segment string) (bool, error) {
	var rep bool
	err := p.quick(opIsMember, userSegment{user, segment}, &rep)
	return rep, err
}

// MemberSince implements bus.Membership.
func (p *part) MemberSince(user, segment string) (bool, time.Time, error) {
	var rep memberSince
	if err := p.quick(opMemberSince, userSegment{user, segment}, &rep); err != nil {
		return false, time.Time{}, err
	}
	return rep.Member, fromWireTime(rep.Since, p.opts.Location), nil
}

// UserSegments implements bus.Membership. Past the wait it answers nil:
// the interface has no error (no endpoint serves it; MemberView does).
func (p *part) UserSegments(user string) []string {
	var rep []string
	if err := p.quick(opUserSegments, userSegment{User: user}, &rep); err != nil {
		return nil
	}
	return rep
}

// UserMemberships implements bus.Membership; past the wait, nil, as
// UserSegments.
func (p *part) UserMemberships(user string) []api.Membership {
	var rep []api.Membership
	if err := p.quick(opUserMembership, userSegment{User: user}, &rep); err != nil {
		return nil
	}
	return rep
}

// remember keeps the segment ids last seen.
func (p *part) remember(ids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if i, found := slices.BinarySearch(p.known, id); !found {
			p.known = slices.Insert(p.known, i, id)
		}
	}
}

func (p *part) knownSegments() []string {
	p.mu.Lock()
	out := slices.Clone(p.known)
	p.mu.Unlock()
	if p.opts.Segments != nil {
		out = append(out, p.opts.Segments()...)
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out
}

// Segments implements bus.Membership. Past the wait, every segment known
// (Options.Segments, and those last seen) is "unavailable" with the
// reason, so that the merged list shows them unavailable, size 0, naming
// the partition, rather than a partial size.
func (p *part) Segments() []api.SegmentInfo {
	var rep []api.SegmentInfo
	if err := p.quick(opSegments, struct{}{}, &rep); err != nil {
		known := p.knownSegments()
		out := make([]api.SegmentInfo, len(known))
		for i, id := range known {
			out[i] = api.SegmentInfo{ID: id, Status: api.SegmentUnavailable, Error: err.Error()}
		}
		return out
	}
	ids := make([]string, len(rep))
	for i := range rep {
		ids[i] = rep[i].ID
	}
	p.remember(ids)
	return rep
}

// SegmentCount implements bus.Membership and bus.SegmentStore.
func (p *part) SegmentCount(segment string) (uint64, error) {
	var rep uint64
	err := p.quick(opSegmentCount, userSegment{Segment: segment}, &rep)
	return rep, err
}

// Status implements bus.Membership. Past the wait the partition is not
// ready, and LastIngestError says why, naming it.
func (p *part) Status() api.StatusReply {
	var rep api.StatusReply
	if err := p.quick(opStatus, struct{}{}, &rep); err != nil {
		return api.StatusReply{Ready: false, Clock: p.Now().Format(time.RFC3339), LastIngestError: err.Error()}
	}
	return rep
}

// MemberView implements bus.Membership. Past the wait the view's Err is a
// 503 naming the partition (the service answers it), and each segment
// asked for is not served, with that error.
func (p *part) MemberView(user string, segments []string) api.MemberView {
	var rep wireView
	body, err := json.Marshal(memberViewRequest{user, segments})
	if err == nil {
		ctx, cancel := p.bounded()
		body, err = p.callChunked(ctx, opMemberView, body, false)
		cancel()
	}
	if err == nil {
		err = decodeJSON(body, &rep)
	}
	if err != nil {
		err = p.unreachable(err)
		v := api.MemberView{Err: err}
		for _, s := range segments {
			v.Segments = append(v.Segments, api.SegmentView{Segment: s, State: api.StateStale, Err: err})
		}
		return v
	}
	return rep.decode(p.opts.Location)
}

// SegmentDetail implements bus.SegmentStore.
func (p *part) SegmentDetail(segment string) (api.SegmentGetReply, error) {
	var rep api.SegmentGetReply
	err := p.quick(opSegmentDetail, userSegment{Segment: segment}, &rep)
	return rep, err
}

// SegmentStatic implements bus.SegmentStore.
func (p *part) SegmentStatic(segment string) (bool, error) {
	var rep bool
	err := p.quick(opSegmentStatic, userSegment{Segment: segment}, &rep)
	return rep, err
}

// pageRequest is the body of segment-page: from, limit, then the segment.
func pageRequest(segment string, from uint32, limit int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, from)
	b = binary.LittleEndian.AppendUint32(b, uint32(max(0, min(limit, 1<<31-1))))
	return append(b, segment...)
}

func parsePageRequest(b []byte) (string, uint32, int, error) {
	if len(b) < 8 {
		return "", 0, 0, fmt.Errorf("segment-page request of %d bytes: want at least 8", len(b))
	}
	return string(b[8:]), binary.LittleEndian.Uint32(b), int(binary.LittleEndian.Uint32(b[4:])), nil
}

// SegmentPage implements bus.SegmentStore (local ids).
func (p *part) SegmentPage(segment string, from uint32, limit int) ([]uint32, bool, error) {
	ctx, cancel := p.bounded()
	defer cancel()
	data, err := p.call(ctx, opSegmentPage, pageRequest(segment, from, limit))
	if err != nil {
		return nil, false, err
	}
	more, ids, err := decodeIDs(data)
	return ids, more, err
}

// SegmentBitmaps implements bus.SegmentStore (local ids).
func (p *part) SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error) {
	body, err := json.Marshal(segmentsRequest{segments})
	if err != nil {
		return nil, 0, err
	}
	data, err := p.call(context.Background(), opSegmentBitmaps, body)
	if err != nil {
		return nil, 0, err
	}
	bms, u, err := decodeBitmaps(data)
	if err == nil && len(bms) != len(segments) {
		err = fmt.Errorf("remotepart: %d bitmaps for %d segments", len(bms), len(segments))
	}
	return bms, u, err
}

// UserNames implements bus.SegmentStore (local ids), in batches of at
// most userNamesBatch ids (fewer if a request would not fit a message).
func (p *part) UserNames(ids []uint32) ([]string, error) {
	out := make([]string, 0, len(ids))
	// A request must fit in a message too.
	batch := max(1, min(userNamesBatch, (int(p.nc.MaxPayload())-4096)/4))
	for chunk := range slices.Chunk(ids, batch) {
		ctx, cancel := p.bounded()
		data, err := p.call(ctx, opUserNames, encodeIDs(false, chunk))
		cancel()
		var names []string
		if err == nil {
			err = decodeJSON(data, &names)
		}
		if err == nil && len(names) != len(chunk) {
			err = fmt.Errorf("remotepart: %d names for %d ids", len(names), len(chunk))
		}
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

// History implements bus.SegmentStore.
func (p *part) History(segment string, from, to time.Time) ([]api.HistoryDay, error) {
	var rep []api.HistoryDay
	err := p.quick(opHistory, historyRequest{segment, from.UnixNano(), to.UnixNano()}, &rep)
	return rep, err
}

// HistoryStart implements scatter.Part; past the wait, "" (the history
// itself, asked just before, answers errors).
func (p *part) HistoryStart(segment string) string {
	var rep string
	if err := p.quick(opHistoryStart, userSegment{Segment: segment}, &rep); err != nil {
		return ""
	}
	return rep
}

// UnavailableSegments implements scatter.Part. Past the wait every
// segment known (Options.Segments, and those last seen) is unavailable.
func (p *part) UnavailableSegments() []string {
	var rep []string
	if err := p.quick(opUnavailable, struct{}{}, &rep); err != nil {
		return p.knownSegments()
	}
	return rep
}

// Location implements bus.SegmentStore: Options.Location.
func (p *part) Location() *time.Location { return p.opts.Location }

// Now implements bus.SegmentStore: Options.Clock.
func (p *part) Now() time.Time { return p.opts.Clock() }

// AnalyzeEvents implements bus.Analyzer.
func (p *part) AnalyzeEvents(ctx context.Context, r *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	var rep api.AnalysisEventsReply
	if err := p.callJSON(ctx, opEvents, r, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// AnalyzeFunnel implements bus.Analyzer.
func (p *part) AnalyzeFunnel(ctx context.Context, r *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	var rep api.AnalysisFunnelReply
	if err := p.callJSON(ctx, opFunnel, r, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// AnalyzeRetention implements bus.Analyzer.
func (p *part) AnalyzeRetention(ctx context.Context, r *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	var rep api.AnalysisRetentionReply
	if err := p.callJSON(ctx, opRetention, r, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// AnalyzeTrend implements bus.Analyzer.
func (p *part) AnalyzeTrend(ctx context.Context, r *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	var rep api.AnalysisTrendReply
	if err := p.callJSON(ctx, opTrend, r, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// UserGet implements scatter.Part.
func (p *part) UserGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error) {
	var rep api.UserGetReply
	if err := p.callJSON(ctx, opUserGet, r, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

var _ bus.Membership = (*part)(nil)
