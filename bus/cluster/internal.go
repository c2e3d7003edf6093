package cluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Reply and request headers.
const (
	// StatusHeader carries the reply's HTTP-like status (absent: 200).
	StatusHeader = "Segd-Status"
	// ReasonHeader says why, for a status other than 200.
	ReasonHeader = "Segd-Reason"
	// FieldHeader names the request field at fault, for a 400.
	FieldHeader = "Segd-Field"
	// chunkHeader is "i/n" on each message of a reply sent in n chunks.
	chunkHeader = "Segd-Chunk"
	// acceptChunksHeader on a request says the caller reads a reply sent
	// in chunks (on an inbox of its own).
	acceptChunksHeader = "Segd-Accept-Chunks"
	// retryHeader marks a 503 that Forward retries (StatusError.Retry).
	retryHeader = "Segd-Retry"
	// needChunksHeader marks the 413 of a reply too large for one message
	// to a request that did not take chunks.
	needChunksHeader = "Segd-Needs-Chunks"
	// timeoutHeader is how long, in milliseconds, the caller waits for
	// this attempt: the handler's context ends then.
	timeoutHeader = "Segd-Timeout-Ms"
)

// Router limits, per partition.
const (
	// SlowPerPartition bounds the slow ops (HandleSlow) that run at once
	// on one partition; the others wait for a slot within their timeout.
	SlowPerPartition = 2
	// MaxInFlight bounds the requests of one partition being handled or
	// waiting; past it a request is a 503 (busy), which Forward retries.
	MaxInFlight = 256
	// DefaultHandlerTimeout bounds a handler when the request says
	// nothing of its caller's wait.
	DefaultHandlerTimeout = 30 * time.Second
	// chunkMargin is left of the max payload for a chunk's headers.
	chunkMargin = 1024
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
	// Field names the request field at fault, for a 400.
	Field string
	// Retry marks a 503 of ownership in flux (no owner, an owner that no
	// longer or not yet serves the partition, a busy one), which Forward
	// retries until its MaxWait; a 503 without it is the partition's own
	// answer (a segment being rebuilt), returned at once.
	Retry bool
}

func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// Unavailable reports whether err is a 503: the partition has no owner
// right now (a takeover is under way), which a caller may retry later.
func Unavailable(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == 503
}

// Handler runs op on a partition this host owns. An error that is a
// *StatusError goes back as is; any other error is a 500. Its context
// ends when the caller stops waiting, or the lease ends.
type Handler func(ctx context.Context, partition int, req []byte) ([]byte, error)

// Router answers internal requests for the partitions this host owns.
// Register handlers with Handle, then call Serve from Options.OnGain and
// Stop from Options.OnLose.
type Router struct {
	nc *nats.Conn

	mu       sync.Mutex
	handlers map[string]route
	subs     map[int]*nats.Subscription
}

// route is a registered op.
type route struct {
	h    Handler
	slow bool
}

// served is the state of one served partition.
type served struct {
	slots    chan struct{} // SlowPerPartition slow ops
	inFlight atomic.Int32
	// ctx ends when the lease does: the handlers' contexts derive from it.
	ctx context.Context
}

// NewRouter returns a Router answering on nc.
func NewRouter(nc *nats.Conn) *Router {
	return &Router{nc: nc, handlers: map[string]route{}, subs: map[int]*nats.Subscription{}}
}

// Handle registers h for op (1-32 of a-z 0-9 _ -). It applies to
// partitions served from then on and already served. Each request runs on
// its own goroutine, so a quick op is not held behind a slow one.
func (r *Router) Handle(op string, h Handler) error { return r.handle(op, h, false) }

// HandleSlow registers h for op like Handle, for an op that may run long
// (an analysis reading a whole partition): at most SlowPerPartition of
// the slow ops of one partition run at once, the others wait.
func (r *Router) HandleSlow(op string, h Handler) error { return r.handle(op, h, true) }

func (r *Router) handle(op string, h Handler, slow bool) error {
	if !opPattern.MatchString(op) {
		return fmt.Errorf("cluster: internal op %q: want 1-32 of a-z 0-9 _ -", op)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[op] = route{h, slow}
	return nil
}

// Serve answers requests for l's partition while l is Valid; a request
// that arrives after it is not, or whose answer is ready only after it
// is not, answers 503, so the caller tries the next owner. Requests are
// handled concurrently (at most MaxInFlight per partition; slow ones at
// most SlowPerPartition).
func (r *Router) Serve(l *Lease) error {
	n := l.Partition
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-l.Done(); cancel() }()
	st := &served{slots: make(chan struct{}, SlowPerPartition), ctx: ctx}
	sub, err := r.nc.QueueSubscribe(InternalPrefix+"p"+strconv.Itoa(n)+".*", internalQueue, func(m *nats.Msg) {
		r.dispatch(l, st, m)
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

// dispatch starts answering m on a goroutine of its own: the
// subscription's callback returns at once, so that a slow request does
// not hold the next.
func (r *Router) dispatch(l *Lease, st *served, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	if st.inFlight.Add(1) > MaxInFlight {
		st.inFlight.Add(-1)
		r.respond(m, nil, &StatusError{Code: 503, Reason: fmt.Sprintf("partition %d of %d is busy: %d requests in flight", l.Partition, l.Partitions, MaxInFlight), Retry: true})
		return
	}
	go func() {
		defer st.inFlight.Add(-1)
		body, err := r.answer(l, st, m)
		r.respond(m, body, err)
	}()
}

func (r *Router) answer(l *Lease, st *served, m *nats.Msg) ([]byte, error) {
	op := m.Subject[len(InternalPrefix+"p"+strconv.Itoa(l.Partition)+"."):]
	r.mu.Lock()
	rt, ok := r.handlers[op]
	r.mu.Unlock()
	if !ok {
		return nil, &StatusError{Code: 404, Reason: fmt.Sprintf("internal op %q: no such op", op)}
	}
	lost := func() error {
		return &StatusError{Code: 503, Reason: fmt.Sprintf("partition %d of %d: this host no longer owns it", l.Partition, l.Partitions), Retry: true}
	}
	if !l.Valid() {
		return nil, lost()
	}
	timeout := DefaultHandlerTimeout
	if ms, err := strconv.ParseInt(m.Header.Get(timeoutHeader), 10, 64); err == nil && ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	// The handler stops when the lease ends (its answer then is not
	// sent) or the caller stops waiting.
	ctx, cancel := context.WithTimeout(st.ctx, timeout)
	defer cancel()
	if rt.slow {
		select {
		case st.slots <- struct{}{}:
			defer func() { <-st.slots }()
		case <-ctx.Done():
			return nil, &StatusError{Code: 503, Reason: fmt.Sprintf("partition %d of %d is busy: %d slow requests run", l.Partition, l.Partitions, SlowPerPartition), Retry: true}
		}
	}
	body, err := rt.h(ctx, l.Partition, m.Data)
	if !l.Valid() {
		return nil, lost()
	}
	return body, err
}

// respond sends the reply, or the error as status headers. A reply larger
// than the connection's max payload goes in chunks if the caller takes
// them; otherwise it is a 413.
func (r *Router) respond(m *nats.Msg, body []byte, err error) {
	limit := int(r.nc.MaxPayload()) - chunkMargin
	if err == nil && len(body) > limit && m.Header.Get(acceptChunksHeader) == "" {
		err = &StatusError{Code: 413, Reason: fmt.Sprintf("reply of %d bytes is past the max payload of %d bytes, and the request takes no chunks", len(body), r.nc.MaxPayload())}
	}
	needChunks := err != nil && len(body) > limit
	if err != nil {
		var se *StatusError
		if !errors.As(err, &se) {
			se = &StatusError{Code: 500, Reason: err.Error()}
		}
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(StatusHeader, strconv.Itoa(se.Code))
		reply.Header.Set(ReasonHeader, headerSafe(se.Reason))
		if se.Field != "" {
			reply.Header.Set(FieldHeader, headerSafe(se.Field))
		}
		if se.Retry {
			reply.Header.Set(retryHeader, "1")
		}
		if needChunks {
			reply.Header.Set(needChunksHeader, strconv.Itoa(len(body)))
		}
		m.RespondMsg(reply)
		return
	}
	if len(body) <= limit {
		m.RespondMsg(&nats.Msg{Subject: m.Reply, Data: body})
		return
	}
	n := (len(body) + limit - 1) / limit
	for i := range n {
		chunk := nats.NewMsg(m.Reply)
		chunk.Header.Set(chunkHeader, strconv.Itoa(i)+"/"+strconv.Itoa(n))
		chunk.Data = body[i*limit : min(len(body), (i+1)*limit)]
		if r.nc.PublishMsg(chunk) != nil {
			return // the caller times out and retries
		}
	}
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
	// answers (default 5s): no attempt starts past it, and Forward returns
	// a 503.
	MaxWait time.Duration
	// AttemptTimeout bounds one request (default 2s): an owner that died
	// with its subscription still known gets no more than this. The owner's
	// handler is told to stop then.
	AttemptTimeout time.Duration
	// MaxReply, when set, takes a reply larger than the max payload, sent
	// in chunks on an inbox of this request's own, up to MaxReply bytes
	// (past it a 413). Unset, such a reply is a 413 from the owner.
	MaxReply int
	// Large asks for a reply in chunks at once (with MaxReply), for an op
	// whose replies are often large; otherwise the first attempt takes one
	// message, and a reply too large for it is asked again in chunks.
	Large bool
}

// Forward sends op on partition n to its owner and returns the reply
// body. While the partition has no owner (no subscriber, or one that
// answers a 503 marked Retry because its lease just ended) it retries
// until MaxWait or ctx, then returns a *StatusError 503 naming the
// partition. Other statuses come back as *StatusError.
func Forward(ctx context.Context, nc *nats.Conn, n int, op string, req []byte, opts ForwardOptions) ([]byte, error) {
	if !opPattern.MatchString(op) {
		return nil, &StatusError{Code: 400, Reason: fmt.Sprintf("internal op %q: want 1-32 of a-z 0-9 _ -", op)}
	}
	if n < 0 || n >= MaxPartitions {
		return nil, &StatusError{Code: 400, Reason: fmt.Sprintf("partition %d: want 0..%d", n, MaxPartitions-1)}
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 5 * time.Second
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 2 * time.Second
	}
	// No attempt starts past MaxWait; one started before may run its
	// AttemptTimeout (a long analysis is not cut by the wait for an owner).
	waitEnd := time.Now().Add(opts.MaxWait)
	ctx, cancel := context.WithTimeoutCause(ctx, opts.MaxWait+opts.AttemptTimeout, fmt.Errorf("no answer within the %s wait", opts.MaxWait))
	defer cancel()
	subj := InternalSubject(n, op)
	var last string
	chunked := opts.MaxReply > 0 && opts.Large
	for {
		start := time.Now()
		actx, acancel := context.WithTimeout(ctx, opts.AttemptTimeout)
		maxReply := 0
		if chunked {
			maxReply = opts.MaxReply
		}
		msg, err := attempt(actx, nc, subj, req, maxReply)
		acancel()
		if err == nil && msg.Header.Get(needChunksHeader) != "" && opts.MaxReply > 0 && !chunked {
			chunked = true // the reply did not fit in a message: ask again, in chunks
			continue
		}
		switch {
		case err == nil:
			code := 200
			if s := msg.Header.Get(StatusHeader); s != "" {
				code, _ = strconv.Atoi(s)
			}
			if code == 200 {
				return msg.Data, nil
			}
			se := &StatusError{Code: code, Reason: msg.Header.Get(ReasonHeader), Field: msg.Header.Get(FieldHeader),
				Retry: msg.Header.Get(retryHeader) != ""}
			if !se.Retry {
				return nil, se
			}
			last = se.Reason
		case errors.Is(err, nats.ErrNoResponders):
			last = fmt.Sprintf("partition %d has no owner (ownership is moving)", n)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			last = fmt.Sprintf("partition %d's owner did not answer within %s", n, time.Since(start).Round(time.Millisecond))
		default:
			var se *StatusError
			if errors.As(err, &se) {
				return nil, se
			}
			return nil, &StatusError{Code: 503, Reason: fmt.Sprintf("partition %d: %v", n, err)}
		}
		if ctx.Err() == nil && !time.Now().Before(waitEnd) {
			return nil, &StatusError{Code: 503, Reason: fmt.Sprintf("%s; gave up: no answer within the %s wait", last, opts.MaxWait)}
		}
		select {
		case <-ctx.Done():
			return nil, &StatusError{Code: 503, Reason: fmt.Sprintf("%s; gave up: %v", last, context.Cause(ctx))}
		case <-time.After(min(50*time.Millisecond, max(time.Until(waitEnd), time.Millisecond))):
		}
	}
}

// attempt sends one request and waits for its reply until ctx ends. With
// maxReply > 0 it reads a reply sent in chunks, on an inbox of its own.
func attempt(ctx context.Context, nc *nats.Conn, subj string, req []byte, maxReply int) (*nats.Msg, error) {
	out := nats.NewMsg(subj)
	out.Data = req
	if dl, ok := ctx.Deadline(); ok {
		out.Header.Set(timeoutHeader, strconv.FormatInt(max(1, time.Until(dl).Milliseconds()), 10))
	}
	if maxReply <= 0 {
		return nc.RequestMsgWithContext(ctx, out)
	}
	out.Header.Set(acceptChunksHeader, "1")
	out.Reply = nc.NewInbox()
	sub, err := nc.SubscribeSync(out.Reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	// The chunks may arrive faster than they are read: hold up to
	// maxReply of them (and a margin of messages).
	if err := sub.SetPendingLimits(maxReply/1024+16, maxReply+int(nc.MaxPayload())); err != nil {
		return nil, err
	}
	if err := nc.PublishMsg(out); err != nil {
		return nil, err
	}
	first, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	i, n, ok := parseChunk(first.Header.Get(chunkHeader))
	if !ok {
		return first, nil // one message
	}
	if i != 0 {
		return nil, fmt.Errorf("reply chunk %d/%d came first", i, n)
	}
	limit := int(nc.MaxPayload())
	if n > maxReply/max(1, limit-chunkMargin)+1 {
		return nil, &StatusError{Code: 413, Reason: fmt.Sprintf("a reply of %d chunks of up to %d bytes is past the %d bytes a reply may hold", n, limit, maxReply)}
	}
	data := append([]byte(nil), first.Data...)
	for want := 1; want < n; want++ {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		if j, k, ok := parseChunk(m.Header.Get(chunkHeader)); !ok || j != want || k != n {
			return nil, fmt.Errorf("reply chunk %q where %d/%d was due", m.Header.Get(chunkHeader), want, n)
		}
		if len(data)+len(m.Data) > maxReply {
			return nil, &StatusError{Code: 413, Reason: fmt.Sprintf("reply past the %d bytes it may hold", maxReply)}
		}
		data = append(data, m.Data...)
	}
	first.Data = data
	first.Header.Del(chunkHeader)
	return first, nil
}

// parseChunk reads a chunk header "i/n".
func parseChunk(h string) (i, n int, ok bool) {
	a, b, found := strings.Cut(h, "/")
	if !found {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	return i, n, err1 == nil && err2 == nil && i >= 0 && n > 1 && i < n
}
