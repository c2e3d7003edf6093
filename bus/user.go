package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/segd/segd/bus/api"
)

// user.get limits (docs/api.md, Limits): past one, a 400 naming the field.
const (
	// DefaultUserEvents is a user.get page's events unless Limit says.
	DefaultUserEvents = 100
	// MaxUserEvents bounds a user.get page.
	MaxUserEvents = 1000
	// MaxUserEventsOffset bounds user.get's Offset: the events skipped are
	// still read.
	MaxUserEventsOffset = 1_000_000
)

// UserGetEndpoint is segd.v1.user.get, answered by get once the request is
// validated: the user is a valid id, the dates parse with From <= To,
// Limit is 0..MaxUserEvents (0: DefaultUserEvents) and Offset
// 0..MaxUserEventsOffset. get returns an error wrapping ErrNotFound for an
// unknown segment.
func UserGetEndpoint(get func(context.Context, *api.UserGetRequest) (*api.UserGetReply, error)) Endpoint {
	return Endpoint{
		Name: "user_get", Subject: "user.get",
		Description: "A user's profile, segments (with since), recent events (newest first, paged) and, for one segment, the value of each condition of its rule.",
		Request:     `{"user":"u42","segment":"loyal","from":"2026-11-22","to":"2026-11-28","limit":100}`,
		Reply:       `{"user":"u42","known":true,"profile":{"country":"FR"},"segments":[{"segment":"loyal","since":"2026-11-27T09:12:44Z"}],"from":"2026-11-22","to":"2026-11-28","events":[{"time":"2026-11-28T10:01:02Z","event":"checkout"}],"explain":{"segment":"loyal","member":true,"holds":true,"conditions":[{"depth":0,"condition":"did checkout: count >= 3, last 7d","value":4,"holds":true,"text":"checkout count in last 7d = 4 (>= 3 holds)"}]}}`,
		ParseContext: func(data []byte) (Work, *api.ErrorDetail) {
			var r struct {
				User    json.RawMessage `json:"user"`
				Segment string          `json:"segment"`
				From    string          `json:"from"`
				To      string          `json:"to"`
				Limit   int             `json:"limit"`
				Offset  int             `json:"offset"`
			}
			if bad := decodeRequest(data, &r, false); bad != nil {
				return nil, bad
			}
			user, bad := requestUser(r.User)
			if bad != nil {
				return nil, bad
			}
			if len(r.Segment) > MaxAnalysisName {
				return nil, badField("segment", fmt.Sprintf(`"segment" has %d bytes; a name has at most %d`, len(r.Segment), MaxAnalysisName))
			}
			if r.Limit < 0 || r.Limit > MaxUserEvents {
				return nil, badField("limit", fmt.Sprintf(`"limit" must be between 1 and %d (0: %d), not %d`, MaxUserEvents, DefaultUserEvents, r.Limit))
			}
			if r.Limit == 0 {
				r.Limit = DefaultUserEvents
			}
			if r.Offset < 0 || r.Offset > MaxUserEventsOffset {
				return nil, badField("offset", fmt.Sprintf(`"offset" must be between 0 and %d, not %d`, MaxUserEventsOffset, r.Offset))
			}
			if _, bad := checkRange(r.From, r.To, nil); bad != nil {
				return nil, bad
			}
			req := &api.UserGetRequest{User: user, Segment: r.Segment, From: r.From, To: r.To, Limit: r.Limit, Offset: r.Offset}
			return func(ctx context.Context) (any, error) {
				rep, err := get(ctx, req)
				if err != nil {
					return nil, err
				}
				// Unescaped, so that "(>= 3 holds)" reads as written.
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(rep); err != nil {
					return nil, err
				}
				return json.RawMessage(bytes.TrimSpace(buf.Bytes())), nil
			}, nil
		},
	}
}
