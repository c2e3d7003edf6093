package bus

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/segd/segd/bus/api"
)

// maxSegmentID bounds a segment id in a member.segments request: longer
// ids cannot be defined, and the reply repeats what was asked.
const maxSegmentID = 256

// QuickMembership is what a Membership may add so that the service answers
// member.check and member.segments on the request's own goroutine, without
// the hand-off to a worker: TryMemberView answers as MemberView does, or
// gives up at once (ok false) when the answer would wait (for a lock held
// by the writer, say). It must never wait: the goroutine that calls it
// receives every later request of its endpoint. A request it gives up on
// goes to the worker pool and MemberView.
type QuickMembership interface {
	TryMemberView(user string, segments []string) (v MemberView, ok bool)
}

// memberQuery is a validated member.check or member.segments request.
type memberQuery struct {
	user string
	// segments are the segments asked for, distinct; nil: every segment.
	segments []string
	// check marks member.check, whose one segment one holds.
	check     bool
	one       [1]string
	exactOnly bool
}

// maxQuickSegments bounds the segments a member query may ask about to be
// answered on micro's goroutine: a lookup grows with them (a read of
// every segment's bitmap), and on that one goroutine it would delay every
// later request of its endpoint, all the more when ingest competes for
// the cores. Larger ones (member.segments of every segment) go to the
// worker pool, which reads several at once.
const maxQuickSegments = 16

// quick says whether q is small enough to answer on micro's goroutine.
func (q *memberQuery) quick() bool {
	return q.segments != nil && len(q.segments) <= maxQuickSegments
}

// answer encodes the reply to q from v.
func (q *memberQuery) answer(v MemberView) (any, error) {
	if v.Err != nil {
		return nil, v.Err // a view that could not be read (a partition elsewhere)
	}
	if !q.check {
		rb := getReplyBuf()
		rb.b = appendMemberSegments(rb.b, &v, q.exactOnly)
		return rb, nil
	}
	if len(v.Segments) != 1 {
		return nil, fmt.Errorf("segment %q is not defined: %w", q.one[0], ErrNotFound)
	}
	sv := &v.Segments[0]
	if !sv.Served {
		return nil, sv.Err
	}
	rep := api.MemberCheckReply{Member: sv.Member, State: sv.State, Revision: sv.Revision, AsOf: &v.AsOf}
	var since time.Time
	if sv.Member {
		since = sv.Since
	}
	rb := getReplyBuf()
	rb.b = appendMemberCheck(rb.b, &rep, since)
	return rb, nil
}

// work is q answered by MemberView, on a worker.
func (q *memberQuery) work(m Membership) func() (any, error) {
	return func() (any, error) { return q.answer(m.MemberView(q.user, q.segments)) }
}

// try is q answered by TryMemberView: ok false if it would wait.
func (q *memberQuery) try(m QuickMembership) (reply any, ok bool, err error) {
	v, ok := m.TryMemberView(q.user, q.segments)
	if !ok {
		return nil, false, nil
	}
	reply, err = q.answer(v)
	return reply, true, err
}

// memberParse is the endpoint's parse for a member query parser.
func memberParse(parse func(data []byte) (*memberQuery, *api.ErrorDetail)) func(Membership, []byte) (func() (any, error), *api.ErrorDetail) {
	return func(m Membership, data []byte) (func() (any, error), *api.ErrorDetail) {
		q, bad := parse(data)
		if bad != nil {
			return nil, bad
		}
		return q.work(m), nil
	}
}

// parseMemberCheck validates a member.check request. The answer carries
// the segment's state and the point of the log it reflects; a segment
// whose membership is not served answers 503, as it always has, so that
// a client reading only "member" never takes a guess for an answer.
func parseMemberCheck(data []byte) (*memberQuery, *api.ErrorDetail) {
	q := &memberQuery{check: true}
	if p, ok := scanPlainRequest(data, false); ok && plainUser(p) && p.segment != "" {
		q.user, q.one[0] = p.user, p.segment
	} else {
		var r struct {
			User    json.RawMessage `json:"user"`
			Segment string          `json:"segment"`
		}
		if bad := decodeRequest(data, &r, false); bad != nil {
			return nil, bad
		}
		u, bad := requestUser(r.User)
		if bad != nil {
			return nil, bad
		}
		if r.Segment == "" {
			return nil, badField("segment", `"segment" is required`)
		}
		q.user, q.one[0] = u, r.Segment
	}
	q.segments = q.one[:]
	return q, nil
}

// parseMemberSegments validates a member.segments request: the segments
// asked for (distinct, at most api.MaxMemberSegments; absent: all) and
// whether only exact ones are answered.
func parseMemberSegments(data []byte) (*memberQuery, *api.ErrorDetail) {
	var r struct {
		User      json.RawMessage `json:"user"`
		Segments  []string        `json:"segments"`
		ExactOnly bool            `json:"exact_only"`
	}
	q := &memberQuery{}
	if p, ok := scanPlainRequest(data, true); ok && plainUser(p) {
		q.user, r.Segments, q.exactOnly = p.user, p.segments, p.exactOnly
	} else {
		if bad := decodeRequest(data, &r, false); bad != nil {
			return nil, bad
		}
		u, bad := requestUser(r.User)
		if bad != nil {
			return nil, bad
		}
		q.user, q.exactOnly = u, r.ExactOnly
	}
	var bad *api.ErrorDetail
	if q.segments, bad = memberSegmentsAsked(r.Segments); bad != nil {
		return nil, bad
	}
	return q, nil
}

// plainUser says whether a scanned request's user is one requestUser
// takes as is; the others take the slow path, which says what is wrong.
func plainUser(p plainRequest) bool {
	return p.user != "" && len(p.user) <= MaxUserBytes
}

// memberSegmentsAsked checks member.segments' "segments": nil stays nil
// (every segment); otherwise the distinct ids, which must be non-empty.
func memberSegmentsAsked(ids []string) ([]string, *api.ErrorDetail) {
	if ids == nil {
		return nil, nil
	}
	if len(ids) == 0 {
		return nil, badField("segments", `"segments" is empty; leave it out to ask about every segment`)
	}
	out := make([]string, 0, min(len(ids), api.MaxMemberSegments))
	var seen map[string]bool // for long lists of repeats, which a request may hold many of
	if len(ids) > 16 {
		seen = make(map[string]bool, api.MaxMemberSegments)
	}
	for i, id := range ids {
		switch {
		case id == "":
			return nil, badField("segments", fmt.Sprintf(`"segments"[%d] is empty`, i))
		case len(id) > maxSegmentID:
			return nil, badField("segments", fmt.Sprintf(`"segments"[%d] is %d bytes long, more than %d`, i, len(id), maxSegmentID))
		case seen != nil && seen[id], seen == nil && slices.Contains(out, id):
			continue
		}
		if seen != nil {
			seen[id] = true
		}
		if len(out) == api.MaxMemberSegments {
			return nil, badField("segments", fmt.Sprintf(`"segments" names more than %d distinct segments; ask in several requests`, api.MaxMemberSegments))
		}
		out = append(out, id)
	}
	return out, nil
}
