package remotepart

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/scatter"
)

// Serve registers on r a handler for every Part method: it decodes the
// request, calls the Part of partition n that local returns, and encodes
// the reply or the error (keeping its kind, see the package doc). local
// answering false is a 503 naming the partition: this host owns it (the
// Router serves only leased partitions) but does not serve it yet, or no
// longer. The ops that read a whole partition are registered as slow
// (cluster.Router.HandleSlow) so that they do not hold point lookups.
func Serve(r *cluster.Router, local func(n int) (scatter.Part, bool)) error {
	part := func(n int) (scatter.Part, error) {
		p, ok := local(n)
		if !ok {
			return nil, &cluster.StatusError{Code: 503, Reason: fmt.Sprintf("partition %d is not served on this host now", n), Retry: true}
		}
		return p, nil
	}
	// withJSON registers op for a JSON request of type Req.
	type handler = func(ctx context.Context, p scatter.Part, req []byte) (any, error)
	add := func(op string, h handler) error {
		fn := func(ctx context.Context, n int, req []byte) ([]byte, error) {
			p, err := part(n)
			if err != nil {
				return nil, err
			}
			rep, err := h(ctx, p, req)
			if err != nil {
				return nil, toStatus(err)
			}
			if b, ok := rep.([]byte); ok {
				return b, nil
			}
			b, err := json.Marshal(rep)
			if err != nil {
				return nil, toStatus(fmt.Errorf("remotepart: encode %s reply: %w", op, err))
			}
			return b, nil
		}
		for _, s := range slowOps {
			if s == op {
				return r.HandleSlow(op, fn)
			}
		}
		return r.Handle(op, fn)
	}
	us := func(req []byte) (userSegment, error) {
		var r userSegment
		return r, decodeJSON(req, &r)
	}
	handlers := map[string]handler{
		opIsMember: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.IsMember(r.User, r.Segment)
		},
		opMemberSince: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			ok, since, err := p.MemberSince(r.User, r.Segment)
			return memberSince{ok, wireTime(since)}, err
		},
		opUserSegments: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.UserSegments(r.User), nil
		},
		opUserMembership: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.UserMemberships(r.User), nil
		},
		opSegments: func(_ context.Context, p scatter.Part, _ []byte) (any, error) { return p.Segments(), nil },
		opSegmentCount: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.SegmentCount(r.Segment)
		},
		opStatus: func(_ context.Context, p scatter.Part, _ []byte) (any, error) { return p.Status(), nil },
		opMemberView: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			var r memberViewRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			return encodeView(p.MemberView(r.User, r.Segments)), nil
		},
		opSegmentDetail: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.SegmentDetail(r.Segment)
		},
		opSegmentStatic: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.SegmentStatic(r.Segment)
		},
		opSegmentPage: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			seg, from, limit, err := parsePageRequest(req)
			if err != nil {
				return nil, err
			}
			ids, more, err := p.SegmentPage(seg, from, limit)
			if err != nil {
				return nil, err
			}
			return encodeIDs(more, ids), nil
		},
		opSegmentBitmaps: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			var r segmentsRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			bms, u, err := p.SegmentBitmaps(r.Segments)
			if err != nil {
				return nil, err
			}
			return encodeBitmaps(bms, u)
		},
		opUserNames: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			_, ids, err := decodeIDs(req)
			if err != nil {
				return nil, err
			}
			return p.UserNames(ids)
		},
		opHistory: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			var r historyRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			loc := p.Location()
			return p.History(r.Segment, time.Unix(0, r.From).In(loc), time.Unix(0, r.To).In(loc))
		},
		opHistoryStart: func(_ context.Context, p scatter.Part, req []byte) (any, error) {
			r, err := us(req)
			if err != nil {
				return nil, err
			}
			return p.HistoryStart(r.Segment), nil
		},
		opUnavailable: func(_ context.Context, p scatter.Part, _ []byte) (any, error) { return p.UnavailableSegments(), nil },
		opEvents: func(ctx context.Context, p scatter.Part, req []byte) (any, error) {
			var r api.AnalysisEventsRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			return p.AnalyzeEvents(ctx, &r)
		},
		opFunnel: func(ctx context.Context, p scatter.Part, req []byte) (any, error) {
			var r api.AnalysisFunnelRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			return p.AnalyzeFunnel(ctx, &r)
		},
		opRetention: func(ctx context.Context, p scatter.Part, req []byte) (any, error) {
			var r api.AnalysisRetentionRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			return p.AnalyzeRetention(ctx, &r)
		},
		opTrend: func(ctx context.Context, p scatter.Part, req []byte) (any, error) {
			var r api.AnalysisTrendRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			return p.AnalyzeTrend(ctx, &r)
		},
		opUserGet: func(ctx context.Context, p scatter.Part, req []byte) (any, error) {
			var r api.UserGetRequest
			if err := decodeJSON(req, &r); err != nil {
				return nil, err
			}
			return p.UserGet(ctx, &r)
		},
	}
	for op, h := range handlers {
		if err := add(op, h); err != nil {
			return err
		}
	}
	return nil
}
