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

// parseMemberCheck validates a member.check request. The answer carries
// the segment's state and the point of the log it reflects; a segment
// whose membership is not served answers 503, as it always has, so that
// a client reading only "member" never takes a guess for an answer.
func parseMemberCheck(m Membership, data []byte) (func() (any, error), *api.ErrorDetail) {
	var user, segment string
	if p, ok := scanPlainRequest(data, false); ok && plainUser(p) && p.segment != "" {
		user, segment = p.user, p.segment
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
		user, segment = u, r.Segment
	}
	return func() (any, error) {
		v := m.MemberView(user, []string{segment})
		if v.Err != nil {
			return nil, v.Err
		}
		if len(v.Segments) != 1 {
			return nil, fmt.Errorf("segment %q is not defined: %w", segment, ErrNotFound)
		}
		sv := v.Segments[0]
		if !sv.Served {
			return nil, sv.Err
		}
		rep := api.MemberCheckReply{Member: sv.Member, State: sv.State, Revision: sv.Revision, AsOf: &v.AsOf}
		if sv.Member && !sv.Since.IsZero() {
			rep.Since = sv.Since.Format(time.RFC3339)
		}
		rb := getReplyBuf()
		rb.b = appendMemberCheck(rb.b, &rep)
		return rb, nil
	}, nil
}

// parseMemberSegments validates a member.segments request: the segments
// asked for (distinct, at most api.MaxMemberSegments; absent: all) and
// whether only exact ones are answered.
func parseMemberSegments(m Membership, data []byte) (func() (any, error), *api.ErrorDetail) {
	var r struct {
		User      json.RawMessage `json:"user"`
		Segments  []string        `json:"segments"`
		ExactOnly bool            `json:"exact_only"`
	}
	var user string
	if p, ok := scanPlainRequest(data, true); ok && plainUser(p) {
		user, r.Segments, r.ExactOnly = p.user, p.segments, p.exactOnly
	} else {
		if bad := decodeRequest(data, &r, false); bad != nil {
			return nil, bad
		}
		u, bad := requestUser(r.User)
		if bad != nil {
			return nil, bad
		}
		user = u
	}
	asked, bad := memberSegmentsAsked(r.Segments)
	if bad != nil {
		return nil, bad
	}
	return func() (any, error) {
		v := m.MemberView(user, asked)
		if v.Err != nil {
			return nil, v.Err
		}
		rb := getReplyBuf()
		rb.b = appendMemberSegments(rb.b, &v, r.ExactOnly)
		return rb, nil
	}, nil
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
