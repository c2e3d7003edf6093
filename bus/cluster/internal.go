package cluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The internal request path: a host asks the owner of partition N to run
// op on it, over segd.internal.v1.p<N>.<op>. Bodies are opaque bytes; the
// host plugs its own codecs and handlers in.

// InternalPrefix starts every internal subject.
const InternalPrefix = "segd.internal.v1."

// internalQueue makes one subscriber answer even while an old and a new
// owner's subscriptions briefly coexist (interest spreads through the
// cluster asynchronously); the one that is not the owner answers 503 and
// the caller retries.
const internalQueue = "segd-internal"

// Reply headers.
const (
	// StatusHeader carries the reply's HTTP-like status (absent: 200).
	StatusHeader = "Segd-Status"
	// ReasonHeader says why, for a status other than 200.
	ReasonHeader = "Segd-Reason"
)

var opPattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// InternalSubject is the subject of op on partition n.
func InternalSubject(n int, op string) string {
	return InternalPrefix + "p" + strconv.Itoa(n) + "." + op
}

// StatusError is a reply that is not a success: Code is HTTP-like (400
// bad request, 404 not found, 503 unavailable, 500 a bug).
type StatusError struct {
	Code   int
	Reason string
}

func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// Unavailable reports whether err is a 503: the partition has no owner
// right now (a takeover is under way), which a caller may retry later.
func Unavailable(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == 503
}

// Handler runs op on a partition this host owns. An error that is a
// *StatusError goes back as is; any other error is a 500.
type Handler func(ctx context.Context, partition int, req []byte) ([]byte, error)

// Router answers internal requests for the partitions this host owns.
// Register handlers with Handle, then call Serve from Options.OnGain and
// Stop from Options.OnLose.
type Router struct {
	nc *nats.Conn

	mu       sync.Mutex
	handlers map[string]Handler
	subs     map[int]*nats.Subscription
}

// NewRouter returns a Router answering on nc.
func NewRouter(nc *nats.Conn) *Router {
	return &Router{nc: nc, handlers: map[string]Handler{}, subs: map[int]*nats.Subscription{}}
}

// Handle registers h for op (1-32 of a-z 0-9 _ -). It applies to
// partitions served from then on and already served.
func (r *Router) Handle(op string, h Handler) error {
	if !opPattern.MatchString(op) {
		return fmt.Errorf("cluster: internal op %q: want 1-32 of a-z 0-9 _ -", op)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[op] = h
	return nil
}

// Serve answers requests for l's partition while l is Valid; a request
// that arrives after it is not answers 503, so the caller tries the next
// owner. Requests of one partition are handled one at a time, in order.
func (r *Router) Serve(l *Lease) error {
	n := l.Partition
	sub, err := r.nc.QueueSubscribe(InternalPrefix+"p"+strconv.Itoa(n)+".*", internalQueue, func(m *nats.Msg) {
		r.answer(l, m)
	})
	if err != nil {
		return fmt.Errorf("cluster: serve partition %d: %w", n, err)
	}
	r.mu.Lock()
	old := r.subs[n]
	r.subs[n] = sub
	r.mu.Unlock()
	if old != nil {
		old.Unsubscribe()
	}
	return nil
}

// Stop stops answering for partition n.
func (r *Router) Stop(n int) {
	r.mu.Lock()
	sub := r.subs[n]
	delete(r.subs, n)
	r.mu.Unlock()
	if sub != nil {
		sub.Unsubscribe()
	}
}

// Close stops answering for every partition.
func (r *Router) Close() {
	r.mu.Lock()
	subs := r.subs
	r.subs = map[int]*nats.Subscription{}
	r.mu.Unlock()
	for _, s := range subs {
		s.Unsubscribe()
	}
}

func (r *Router) answer(l *Lease, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	op := m.Subject[len(InternalPrefix+"p"+strconv.Itoa(l.Partition)+"."):]
	r.mu.Lock()
	h := r.handlers[op]
	r.mu.Unlock()
	var body []byte
	var err error
	switch {
	case !l.Valid():
		err = &StatusError{503, fmt.Sprintf("partition %d of %d: this host no longer owns it", l.Partition, l.Partitions)}
	case h == nil:
		err = &StatusError{404, fmt.Sprintf("internal op %q: no such op", op)}
	default:
		ctx, cancel := context.WithDeadline(context.Background(), l.Deadline())
		body, err = h(ctx, l.Partition, m.Data)
		cancel()
	}
	reply := nats.NewMsg(m.Reply)
	if err != nil {
		var se *StatusError
		if !errors.As(err, &se) {
			se = &StatusError{500, err.Error()}
		}
		reply.Header.Set(StatusHeader, strconv.Itoa(se.Code))
		reply.Header.Set(ReasonHeader, headerSafe(se.Reason))
	} else {
		reply.Data = body
	}
	m.RespondMsg(reply)
}

// headerSafe keeps a reason on one header line.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// ForwardOptions bounds Forward.
type ForwardOptions struct {
	// MaxWait is how long to wait for a partition to have an owner that
	// answers (default 5s); past it Forward returns a 503.
	MaxWait time.Duration
	// AttemptTimeout bounds one request (default 2s): an owner that died
	// with its subscription still known gets no more than this.
	AttemptTimeout time.Duration
}

// Forward sends op on partition n to its owner and returns the reply
// body. While the partition has no owner (no subscriber, or one that
// answers 503 because its lease just ended) it retries until MaxWait or
// ctx, then returns a *StatusError 503 naming the partition. Other
// statuses come back as *StatusError.
func Forward(ctx context.Context, nc *nats.Conn, n int, op string, req []byte, opts ForwardOptions) ([]byte, error) {
	if !opPattern.MatchString(op) {
		return nil, &StatusError{400, fmt.Sprintf("internal op %q: want 1-32 of a-z 0-9 _ -", op)}
	}
	if n < 0 || n >= MaxPartitions {
		return nil, &StatusError{400, fmt.Sprintf("partition %d: want 0..%d", n, MaxPartitions-1)}
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 5 * time.Second
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeoutCause(ctx, opts.MaxWait, fmt.Errorf("no answer within the %s wait", opts.MaxWait))
	defer cancel()
	subj := InternalSubject(n, op)
	var last string
	for {
		start := time.Now()
		actx, acancel := context.WithTimeout(ctx, opts.AttemptTimeout)
		msg, err := nc.RequestMsgWithContext(actx, &nats.Msg{Subject: subj, Data: req})
		acancel()
		switch {
		case err == nil:
			code := 200
			if s := msg.Header.Get(StatusHeader); s != "" {
				code, _ = strconv.Atoi(s)
			}
			if code == 200 {
				return msg.Data, nil
			}
			se := &StatusError{code, msg.Header.Get(ReasonHeader)}
			if code != 503 {
				return nil, se
			}
			last = se.Reason
		case errors.Is(err, nats.ErrNoResponders):
			last = fmt.Sprintf("partition %d has no owner (ownership is moving)", n)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			last = fmt.Sprintf("partition %d's owner did not answer within %s", n, time.Since(start).Round(time.Millisecond))
		default:
			return nil, &StatusError{503, fmt.Sprintf("partition %d: %v", n, err)}
		}
		select {
		case <-ctx.Done():
			return nil, &StatusError{503, fmt.Sprintf("%s; gave up: %v", last, context.Cause(ctx))}
		case <-time.After(50 * time.Millisecond):
		}
	}
}
