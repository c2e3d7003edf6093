package host

import (
	"context"

	"github.com/segd/segd/bus/api"
)

// userGet answers user.get: the engine's profile, memberships and
// explanation, and the analysis index's timeline (host/scatter: the merge
// of the partitions, or the one partition).
func (s *Server) userGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error) {
	if s.scatter != nil {
		return s.scatter.UserGet(ctx, r)
	}
	return s.localPart().UserGet(ctx, r)
}
