// Package client is the typed Go client of segd: membership queries over
// NATS request-reply, and PublishBatch for producers.
//
// It depends only on nats.go and the wire contract in bus/api, not on the
// server side, so importing it does not pull nats-server into a producer.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// Client queries a segd service. It is safe for concurrent use; its zero
// value is not usable, call New.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
	// member bounds the fail-closed membership calls (membership.go).
	member         time.Duration
	acceptPrevious bool
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets how long a request waits for its reply when the context
// has no deadline (default 5s). A request without any bound would hang
// forever on a lost reply.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// New returns a Client that sends its requests over nc.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc, timeout: 5 * time.Second, member: DefaultMembershipTimeout}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is an error reply of the service, or a failure to reach it. Code is
// one of the api.Code* values ("400", "404", "500", "503"); Field names the
// request field at fault, when there is one.
type Error struct {
	// Subject is the endpoint that answered (or did not).
	Subject     string
	Code        string
	Description string
	Field       string

	cause error
}

// Error formats the error as "segd.v1.member.check: 404 segment ...": the
// subject names segd once.
func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s %s", e.Subject, e.Code, e.Description)
	if e.Field != "" {
		s += fmt.Sprintf(" (field %q)", e.Field)
	}
	return s
}

// Unwrap returns the transport error behind a 503, such as
// nats.ErrNoResponders.
func (e *Error) Unwrap() error { return e.cause }

func hasCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// IsNotFound reports whether err is a 404: an unknown segment.
func IsNotFound(err error) bool { return hasCode(err, api.CodeNotFound) }

// IsBadRequest reports whether err is a 400: the request was rejected;
// Error.Field names the culprit.
func IsBadRequest(err error) bool { return hasCode(err, api.CodeBadRequest) }

// IsUnavailable reports whether no segd service answered (503).
func IsUnavailable(err error) bool { return hasCode(err, api.CodeUnavailable) }

// IsMember reports whether user is in segment.
func (c *Client) IsMember(ctx context.Context, user, segment string) (bool, error) {
	var r api.MemberCheckReply
	err := c.call(ctx, api.SubjectMemberCheck, api.MemberCheckRequest{User: user, Segment: segment}, &r)
	return r.Member, err
}

// UserSegments returns the ids of the user's segments in ascending order.
func (c *Client) UserSegments(ctx context.Context, user string) ([]string, error) {
	var r api.MemberSegmentsReply
	err := c.call(ctx, api.SubjectMemberSegments, api.MemberSegmentsRequest{User: user}, &r)
	return r.Segments, err
}

// Segments describes every segment, ordered by id.
func (c *Client) Segments(ctx context.Context) ([]api.SegmentInfo, error) {
	var r api.SegmentListReply
	err := c.call(ctx, api.SubjectSegmentList, struct{}{}, &r)
	return r.Segments, err
}

// SegmentCount returns the number of users in segment.
func (c *Client) SegmentCount(ctx context.Context, segment string) (uint64, error) {
	var r api.SegmentCountReply
	err := c.call(ctx, api.SubjectSegmentCount, api.SegmentCountRequest{Segment: segment}, &r)
	return r.Count, err
}

// Status reports the service's ingest progress.
func (c *Client) Status(ctx context.Context) (*api.StatusReply, error) {
	var r api.StatusReply
	if err := c.call(ctx, api.SubjectStatus, struct{}{}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (c *Client) call(ctx context.Context, subject string, req, reply any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: encoding the request: %w", subject, err)
	}
	msg, err := c.request(ctx, subject, data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: decoding the reply: %w", subject, err)
	}
	return nil
}

// Request sends body as it is (JSON, or empty where an endpoint allows) to
// an endpoint subject and returns the reply's JSON, with the same typed
// errors as the other methods: what `nats req SUBJECT BODY` does.
func (c *Client) Request(ctx context.Context, subject string, body []byte) (json.RawMessage, error) {
	msg, err := c.request(ctx, subject, body)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(msg.Data), nil
}

func (c *Client) request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	msg, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, &Error{Subject: subject, Code: api.CodeUnavailable,
				Description: "no segd service answers; is segd running and connected to this NATS server?", cause: err}
		}
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if e := replyError(subject, msg); e != nil {
		return nil, e
	}
	return msg, nil
}

// replyError reads a micro error reply: the code and description come from
// the Nats-Service-Error(-Code) headers, which every micro service sets; the
// JSON body adds the field at fault.
func replyError(subject string, msg *nats.Msg) *Error {
	code := msg.Header.Get(micro.ErrorCodeHeader)
	desc := msg.Header.Get(micro.ErrorHeader)
	if code == "" && desc == "" {
		return nil
	}
	e := &Error{Subject: subject, Code: code, Description: desc}
	var body api.ErrorBody
	if json.Unmarshal(msg.Data, &body) == nil {
		e.Field = body.Error.Field
		if e.Code == "" {
			e.Code = body.Error.Code
		}
		if e.Description == "" {
			e.Description = body.Error.Description
		}
	}
	if e.Code == "" {
		e.Code = api.CodeInternal
	}
	return e
}
