package client

import (
	"context"

	"github.com/segd/segd/bus/api"
)

// User asks segd what it knows about one user (user.get): profile,
// segments, a page of recent events and, when req.Segment is set, why the
// user is in that segment or not.
func (c *Client) User(ctx context.Context, req api.UserGetRequest) (*api.UserGetReply, error) {
	var r api.UserGetReply
	if err := c.call(ctx, api.SubjectUserGet, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
