package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/api"
)

// DefaultMembershipTimeout bounds InSegment and InSegments unless
// WithMembershipTimeout says otherwise: a flag evaluation waits at most this
// long for segd, then fails closed. segd answers from memory in well under
// a millisecond; the rest is room for the network and a busy host.
const DefaultMembershipTimeout = 100 * time.Millisecond

// WithMembershipTimeout sets the deadline of InSegment and InSegments
// (default DefaultMembershipTimeout). A context with an earlier deadline
// keeps it.
func WithMembershipTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.member = d
		}
	}
}

// AcceptPreviousRevision makes InSegment and InSegments accept the answer
// of a segment being rebuilt after a change while it serves its previous
// revision's exact membership (state "rebuilding", answered): a rule
// change then keeps the old audience until the new one is exact, instead
// of failing closed meanwhile.
func AcceptPreviousRevision() Option {
	return func(c *Client) { c.acceptPrevious = true }
}

// ErrNotExact is wrapped by the error of InSegment and InSegments when
// segd answered, but not with an exact membership (a StateError).
var ErrNotExact = errors.New("the membership is not exact")

// StateError says that segd's answer about some segments is not exact,
// with their states (docs/operations.md, "The membership contract").
type StateError struct {
	Subject string
	// States are the segments answered but not exact; a state "" means
	// segd did not report one (a segd older than the contract).
	States []api.SegmentState
	AsOf   api.AsOf
}

// Error lists the segments and their states.
func (e *StateError) Error() string {
	parts := make([]string, len(e.States))
	for i, s := range e.States {
		st := s.State
		if st == "" {
			st = "without a state"
		}
		parts[i] = fmt.Sprintf("%s is %s", s.Segment, st)
		if s.Revision != 0 {
			parts[i] += fmt.Sprintf(" (revision %d served)", s.Revision)
		}
	}
	return fmt.Sprintf("segd %s: %v: %s (as of seq %d, %s)", e.Subject, ErrNotExact, strings.Join(parts, ", "), e.AsOf.Seq, e.AsOf.Time)
}

// Is reports whether target is ErrNotExact.
func (e *StateError) Is(target error) bool { return target == ErrNotExact }

// InSegment reports whether user is in segment, failing closed: unless
// segd answers within the deadline (the earlier of ctx's and the
// membership timeout, DefaultMembershipTimeout by default) that the
// membership is exact, it returns false and an error. The error is a 503
// (IsUnavailable) when no segd answered in time (errors.Is
// context.DeadlineExceeded) or segd cannot serve the segment (stale,
// failed, rebuilding); a 404 for an unknown segment; a *StateError
// (ErrNotExact) for an answer that is not exact, such as one given while
// segd replays its log after a start.
func (c *Client) InSegment(ctx context.Context, user, segment string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.member)
	defer cancel()
	var r api.MemberCheckReply
	if err := c.call(ctx, api.SubjectMemberCheck, api.MemberCheckRequest{User: user, Segment: segment}, &r); err != nil {
		return false, c.failClosed(api.SubjectMemberCheck, err)
	}
	st := api.SegmentState{Segment: segment, State: r.State, Revision: r.Revision}
	if !c.acceptable(st) {
		e := &StateError{Subject: api.SubjectMemberCheck, States: []api.SegmentState{st}}
		if r.AsOf != nil {
			e.AsOf = *r.AsOf
		}
		return false, e
	}
	return r.Member, nil
}

// InSegments is InSegment for several segments in one request. The map
// holds the segments answered exactly, true for those the user is in; a
// segment missing from it was not (unknown, not exact, or no answer in
// time) and the error names it: a rule that targets it must fail closed,
// the others may use their answers. The error is nil only when every
// segment is answered exactly. At most api.MaxMemberSegments distinct
// segments (a 400 past it).
func (c *Client) InSegments(ctx context.Context, user string, segments []string) (map[string]bool, error) {
	out := make(map[string]bool, len(segments))
	if len(segments) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.member)
	defer cancel()
	var r api.MemberSegmentsReply
	req := api.MemberSegmentsRequest{User: user, Segments: segments, ExactOnly: !c.acceptPrevious}
	if err := c.call(ctx, api.SubjectMemberSegments, req, &r); err != nil {
		return out, c.failClosed(api.SubjectMemberSegments, err)
	}
	states := make(map[string]api.SegmentState, len(r.States))
	for _, s := range r.States {
		states[s.Segment] = s
	}
	unavailable := make(map[string]bool, len(r.Unavailable))
	for _, s := range r.Unavailable {
		unavailable[s] = true
	}
	unknown := make(map[string]bool, len(r.Unknown))
	for _, s := range r.Unknown {
		unknown[s] = true
	}
	members := make(map[string]bool, len(r.Segments))
	for _, s := range r.Segments {
		members[s] = true
	}
	se := &StateError{Subject: api.SubjectMemberSegments}
	if r.AsOf != nil {
		se.AsOf = *r.AsOf
	}
	var missing []string
	for _, s := range segments {
		if _, done := out[s]; done || slices.Contains(missing, s) || slices.ContainsFunc(se.States, func(x api.SegmentState) bool { return x.Segment == s }) {
			continue // a repeat
		}
		st, ok := states[s]
		switch {
		case unknown[s]:
			missing = append(missing, s)
		case !ok:
			se.States = append(se.States, api.SegmentState{Segment: s}) // segd said nothing of it: not exact
		case unavailable[s] || !c.acceptable(st):
			se.States = append(se.States, st)
		default:
			out[s] = members[s]
		}
	}
	var errs []error
	if len(missing) > 0 {
		slices.Sort(missing)
		errs = append(errs, &Error{Subject: api.SubjectMemberSegments, Code: api.CodeNotFound,
			Description: fmt.Sprintf("segments not defined: %s", strings.Join(missing, ", "))})
	}
	if len(se.States) > 0 {
		slices.SortFunc(se.States, func(a, b api.SegmentState) int { return strings.Compare(a.Segment, b.Segment) })
		errs = append(errs, se)
	}
	return out, errors.Join(errs...)
}

// acceptable reports whether an answer in state st may be used. A
// segment "rebuilding" that answered at all serves its previous
// definition's exact membership: one that serves nothing answers
// member.check with a 503 and is listed unavailable by member.segments.
// Its revision is no guide: a rule file's segment has revision 0.
func (c *Client) acceptable(st api.SegmentState) bool {
	return st.State == api.StateExact || c.acceptPrevious && st.State == api.StateRebuilding
}

// failClosed turns a request that got no answer in time into a 503 that
// wraps context.DeadlineExceeded, so that every failure of a fail-closed
// call is an error a caller can tell apart without knowing NATS.
func (c *Client) failClosed(subject string, err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return &Error{Subject: subject, Code: api.CodeUnavailable,
			Description: "no answer within the deadline; failing closed", cause: errors.Join(context.DeadlineExceeded, err)}
	}
	return err
}
