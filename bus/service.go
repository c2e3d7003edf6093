package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

// ServiceOptions configures StartService. The zero value is usable.
type ServiceOptions struct {
	// Version is the service's semantic version (default "0.0.0"), shown by
	// `nats micro ls`.
	Version string
	// Description overrides the default service description.
	Description string
	// Metadata is added to the service's metadata (e.g. partitions owned).
	Metadata map[string]string
	// Workers is the number of goroutines answering requests (default
	// 4*GOMAXPROCS). micro runs one handler at a time per endpoint, so
	// without a pool one slow lookup delays every request behind it. A
	// negative value answers on micro's goroutine, one at a time. Either
	// way, a member query that a QuickMembership answers without waiting
	// is answered on micro's goroutine, with no hand-off.
	Workers int
	// QueueGroup overrides micro's default queue group "q"; instances
	// sharing it split the requests.
	QueueGroup string
	// Endpoints are served beside the membership endpoints, on the same
	// worker pool (the analysis endpoints come this way) or, when Slow, on
	// their own goroutines.
	Endpoints []Endpoint
	// SlowWorkers bounds the slow endpoints' work running at once (default
	// 2*GOMAXPROCS); beyond it, a slow endpoint's next request waits. One
	// slow endpoint may hold at most SlowWorkers-1 of them (at least one),
	// so that it cannot starve the others.
	SlowWorkers int
	// Timeout is each request's deadline, counted from its arrival
	// (default DefaultRequestTimeout; Endpoint.Timeout overrides it). A
	// request still waiting for a worker at its deadline is answered 503
	// without running; work that takes a context stops at it (503).
	Timeout time.Duration
	// MaxQueued bounds the requests waiting for a worker, for the pool
	// and for slow work each (default 64 per worker); past it a request is
	// answered 503 at once rather than held.
	MaxQueued int
	// OnRequest, if set, is told of every request answered: the endpoint's
	// name, the reply's code ("200", or an api.Code* value) and the time
	// from its arrival to its answer. It runs on the answering goroutine
	// and must be quick (a metrics histogram observes it).
	OnRequest func(endpoint, code string, took time.Duration)
}

// DefaultRequestTimeout is a request's deadline unless ServiceOptions or
// the endpoint says otherwise.
const DefaultRequestTimeout = 30 * time.Second

// Work is a validated request's work: it returns the reply to encode as
// JSON, or an error. ctx carries the request's deadline; work that can
// take long checks it and returns its error (answered 503).
type Work func(ctx context.Context) (any, error)

// Endpoint is an extra endpoint of the service, in group segd.v1. Parse
// runs on micro's goroutine and validates the request into work, or into a
// 400 that names the field; the work runs on a worker and returns the reply
// to encode as JSON, or an error (wrapping ErrNotFound for a 404; others
// are 500).
type Endpoint struct {
	// Name is the micro endpoint name ([A-Za-z0-9_-]); Subject its subject
	// within the group, e.g. "analysis.funnel" (the full subject,
	// "segd.v1.analysis.funnel", is accepted too). A full subject under
	// api.AdminGroup registers a state-changing endpoint there.
	Name, Subject string
	// Description, Request and Reply document it in the endpoint metadata.
	Description, Request, Reply string
	Parse                       func(data []byte) (work func() (any, error), bad *api.ErrorDetail)
	// ParseContext replaces Parse for work that honours the request's
	// deadline. Set one of the two.
	ParseContext func(data []byte) (work Work, bad *api.ErrorDetail)
	// Timeout overrides ServiceOptions.Timeout for this endpoint.
	Timeout time.Duration
	// Slow marks work that takes long or waits (an export, an upload
	// waiting to be applied): it runs outside the shared pool, at most
	// ServiceOptions.SlowWorkers at a time, so that membership requests
	// never queue behind it.
	Slow bool
}

func (e Endpoint) def() endpointDef {
	d := endpointDef{
		name: e.Name, subject: strings.TrimPrefix(e.Subject, api.Group+"."), description: e.Description, request: e.Request, reply: e.Reply, slow: e.Slow,
		timeout: e.Timeout,
	}
	if e.ParseContext != nil {
		d.parseCtx = func(_ Membership, data []byte) (Work, *api.ErrorDetail) { return e.ParseContext(data) }
	} else {
		d.parse = func(_ Membership, data []byte) (func() (any, error), *api.ErrorDetail) { return e.Parse(data) }
	}
	return d
}

// Service is the running segd micro service. Stop it with Stop.
type Service struct {
	nc      *nats.Conn
	m       Membership
	svc     micro.Service
	eps     map[string]*endpointStats
	mu      sync.RWMutex // guards closed against sends on jobs
	jobs    chan job
	slow    chan struct{} // semaphore of slow work
	waiting atomic.Int64  // slow requests waiting for a slot
	opts    ServiceOptions
	stop    chan struct{} // closed by Stop: waiting requests give up
	wg      sync.WaitGroup

	closed bool
}

// job is one validated request waiting for a worker.
type job struct {
	reply    string
	work     Work
	received time.Time
	deadline time.Time
	// ctx carries the deadline to work that waits or takes a context; nil
	// for the quick lookups of the pool, which only check the deadline
	// before they run (a timer per lookup costs more than the lookup).
	ctx    context.Context
	cancel context.CancelFunc
	stats  *endpointStats
}

// endpointStats counts the errors answered by workers, which micro's own
// stats cannot see (they are answered after micro's handler returned),
// and by the quick path (answerQuick), which answers the same way.
type endpointStats struct {
	errors    atomic.Uint64
	lastError atomic.Value // string
	// slots bounds the endpoint's slow work running at once; waiting
	// counts its requests waiting for a slot.
	slots   chan struct{}
	waiting atomic.Int64
	// name is the endpoint's, for ServiceOptions.OnRequest.
	name string
}

// endpointDef describes one endpoint: where it lives, how it is documented,
// and how a request is validated (on micro's goroutine) into work (run on
// a worker).
type endpointDef struct {
	name, subject  string
	description    string
	request, reply string
	parse          func(m Membership, data []byte) (func() (any, error), *api.ErrorDetail)
	// parseCtx, when set, replaces parse for work that takes the request's
	// context.
	parseCtx func(m Membership, data []byte) (Work, *api.ErrorDetail)
	slow     bool
	timeout  time.Duration
	// member, set for member.check and member.segments, parses a query
	// that a QuickMembership may answer on micro's goroutine (parse is
	// then its worker's path).
	member func(data []byte) (*memberQuery, *api.ErrorDetail)
}

var endpointDefs = []endpointDef{
	{
		name: "member_check", subject: "member.check",
		description: "Is a user in a segment, since when, the segment's state and the point of the log the answer reflects? An unknown segment is 404; an unknown user is in none; a segment not served (stale, failed, rebuilding) is 503.",
		request:     `{"user":"u42","segment":"vip"}`,
		reply:       `{"member":true,"since":"2026-11-27T09:12:44+08:00","state":"exact","as_of":{"seq":812,"time":"2026-11-28T10:15:00+08:00"}}`,
		member:      parseMemberCheck,
		parse:       memberParse(parseMemberCheck),
	},
	{
		name: "member_segments", subject: "member.segments",
		description: "The ids of a user's segments (all, or those asked for), ascending, since when the user is in each, every segment's state and the point of the log the answer reflects; empty for a user never seen.",
		request:     `{"user":"u42","segments":["active_7d","vip"],"exact_only":true}`,
		reply:       `{"segments":["active_7d","vip"],"memberships":[{"segment":"active_7d","since":"2026-11-28T10:15:00+08:00"},{"segment":"vip","since":"2026-11-02T08:00:01+08:00"}],"states":[{"segment":"active_7d","state":"exact"},{"segment":"vip","state":"exact"}],"as_of":{"seq":812,"time":"2026-11-28T10:15:00+08:00"}}`,
		member:      parseMemberSegments,
		parse:       memberParse(parseMemberSegments),
	},
	{
		name: "segment_list", subject: "segment.list",
		description: "Every segment with its kind, size and status, ordered by id. The request may be empty.",
		request:     `{}`,
		reply:       `{"segments":[{"id":"vip","kind":"attribute","size":1234,"status":"active"}]}`,
		parse: func(m Membership, data []byte) (func() (any, error), *api.ErrorDetail) {
			var r struct{}
			if bad := decodeRequest(data, &r, true); bad != nil {
				return nil, bad
			}
			return func() (any, error) {
				segs := m.Segments()
				if segs == nil {
					segs = []api.SegmentInfo{}
				}
				return api.SegmentListReply{Segments: segs}, nil
			}, nil
		},
	},
	{
		name: "segment_count", subject: "segment.count",
		description: "The number of users in a segment. An unknown segment is 404.",
		request:     `{"segment":"vip"}`,
		reply:       `{"count":1234}`,
		parse: func(m Membership, data []byte) (func() (any, error), *api.ErrorDetail) {
			var r api.SegmentCountRequest
			if bad := decodeRequest(data, &r, false); bad != nil {
				return nil, bad
			}
			if r.Segment == "" {
				return nil, badField("segment", `"segment" is required`)
			}
			return func() (any, error) {
				n, err := m.SegmentCount(r.Segment)
				return api.SegmentCountReply{Count: n}, err
			}, nil
		},
	},
	{
		name: "status", subject: "status",
		description: "Ingest progress and health. The request may be empty.",
		request:     `{}`,
		reply:       `{"ready":true,"last_seq":812,"batches":812,"events":81200,"profiles":0,"invalid_items":0,"not_batches":0,"users":5000,"clock":"2026-11-28T10:15:00Z"}`,
		parse: func(m Membership, data []byte) (func() (any, error), *api.ErrorDetail) {
			var r struct{}
			if bad := decodeRequest(data, &r, true); bad != nil {
				return nil, bad
			}
			return func() (any, error) { return m.Status(), nil }, nil
		},
	},
}

// StartService registers the segd micro service on nc and returns once
// the server routes requests to it. Its endpoints live
// under api.Group (see the api package for subjects and JSON types); every
// endpoint's metadata carries a description and request and reply examples,
// which `nats micro info segd` shows.
func StartService(nc *nats.Conn, m Membership, opts ServiceOptions) (*Service, error) {
	if nc == nil || m == nil {
		return nil, errors.New("bus.StartService: nil connection or Membership")
	}
	if opts.Version == "" {
		opts.Version = "0.0.0"
	}
	if opts.Description == "" {
		opts.Description = "segd real-time user segmentation: membership queries"
	}
	if opts.Workers == 0 {
		opts.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.SlowWorkers <= 0 {
		opts.SlowWorkers = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRequestTimeout
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 64 * max(opts.Workers, opts.SlowWorkers, 1)
	}
	s := &Service{nc: nc, m: m, eps: make(map[string]*endpointStats), slow: make(chan struct{}, opts.SlowWorkers),
		opts: opts, stop: make(chan struct{})}
	defs := slices.Clone(endpointDefs)
	for _, e := range opts.Endpoints {
		if (e.Parse == nil) == (e.ParseContext == nil) {
			return nil, fmt.Errorf("bus.StartService: endpoint %s must set one of Parse and ParseContext", e.Name)
		}
		defs = append(defs, e.def())
	}
	for _, d := range defs {
		s.eps[d.name] = &endpointStats{slots: make(chan struct{}, max(1, opts.SlowWorkers-1)), name: d.name}
	}
	md := map[string]string{"api": api.Group}
	for k, v := range opts.Metadata {
		md[k] = v
	}
	workers := max(opts.Workers, 0)
	md["workers"] = fmt.Sprint(workers)
	cfg := micro.Config{
		Name:        api.ServiceName,
		Version:     opts.Version,
		Description: opts.Description,
		Metadata:    md,
		QueueGroup:  opts.QueueGroup,
		StatsHandler: func(e *micro.Endpoint) any {
			st := s.eps[e.Name]
			if st == nil {
				return nil
			}
			last, _ := st.lastError.Load().(string)
			return map[string]any{"worker_errors": st.errors.Load(), "last_worker_error": last}
		},
	}
	if workers > 0 {
		s.jobs = make(chan job, opts.MaxQueued)
		s.wg.Add(workers)
		for range workers {
			go s.worker()
		}
	}
	svc, err := micro.AddService(nc, cfg)
	if err != nil {
		s.stopWorkers()
		return nil, fmt.Errorf("segd service: %w", err)
	}
	s.svc = svc
	g, admin := svc.AddGroup(api.Group), svc.AddGroup(api.AdminGroup)
	for _, d := range defs {
		grp, subject := g, d.subject
		if sub, ok := strings.CutPrefix(subject, api.AdminGroup+"."); ok {
			grp, subject = admin, sub // state-changing: see api.AdminGroup
		}
		emd := map[string]string{
			"description": d.description,
			"request":     d.request,
			"reply":       d.reply,
		}
		if err := grp.AddEndpoint(d.name, s.handler(d), micro.WithEndpointSubject(subject), micro.WithEndpointMetadata(emd)); err != nil {
			_ = svc.Stop()
			s.stopWorkers()
			return nil, fmt.Errorf("segd service: endpoint %s: %w", d.name, err)
		}
	}
	// Once StartService returns, requests from other connections must find
	// the endpoints: wait until the server has processed the subscriptions.
	if err := nc.Flush(); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("segd service: %w", err)
	}
	return s, nil
}

// handler validates on micro's goroutine, so that 400s show in micro's
// stats, and hands the work on. It never waits: micro runs one handler at
// a time per endpoint, so a handler that waited for a worker would hold up
// every later request of its endpoint, cheap or not. The request's
// deadline starts here.
func (s *Service) handler(d endpointDef) micro.HandlerFunc {
	st := s.eps[d.name]
	timeout := d.timeout
	if timeout <= 0 {
		timeout = s.opts.Timeout
	}
	quick, _ := s.m.(QuickMembership)
	return func(req micro.Request) {
		now := time.Now()
		var (
			work Work
			bad  *api.ErrorDetail
		)
		if d.member != nil {
			var q *memberQuery
			if q, bad = safeParseMember(d, req.Data()); bad == nil {
				if quick != nil && q.quick() && s.answerQuick(q, quick, req.Reply(), st, now) {
					return
				}
				w := q.work(s.m)
				work = func(context.Context) (any, error) { return w() }
			}
		} else {
			work, bad = safeParse(d, s.m, req.Data())
		}
		if bad != nil {
			_ = req.Error(bad.Code, bad.Description, errorBody(*bad))
			s.observe(st, bad.Code, now)
			return
		}
		j := job{reply: req.Reply(), work: work, received: now, deadline: now.Add(timeout), stats: st}
		if d.slow || d.parseCtx != nil {
			j.ctx, j.cancel = context.WithDeadline(context.Background(), j.deadline)
		}
		if d.slow {
			s.runSlow(j)
			return
		}
		if s.jobs == nil {
			s.run(j)
			return
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			s.respond(j, nil, errStopping, api.CodeUnavailable)
			return
		}
		select {
		case s.jobs <- j:
		default:
			s.respond(j, nil, fmt.Errorf("segd is busy: %d requests wait for a worker; retry later", cap(s.jobs)), api.CodeUnavailable)
		}
	}
}

var errStopping = errors.New("segd service is stopping")

// slowWaitingPerSlot bounds an endpoint's requests waiting for slow work,
// per slot of slow work.
const slowWaitingPerSlot = 8

// runSlow runs slow work on its own goroutine once both a slot of its
// endpoint and a slot of all slow work are free, or answers 503 at the
// request's deadline. The waiting happens on that goroutine, so micro's
// goroutine goes on to the endpoint's next request.
func (s *Service) runSlow(j job) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.respond(j, nil, errStopping, api.CodeUnavailable)
		return
	}
	// A waiting request holds its decoded body (an upload: up to the max
	// payload), so each endpoint may have only so many waiting.
	if n := j.stats.waiting.Add(1); n > int64(slowWaitingPerSlot*cap(s.slow)) {
		j.stats.waiting.Add(-1)
		s.respond(j, nil, fmt.Errorf("segd is busy: %d requests of this endpoint wait; retry later", n-1), api.CodeUnavailable)
		return
	}
	if n := s.waiting.Add(1); n > int64(s.opts.MaxQueued) {
		s.waiting.Add(-1)
		j.stats.waiting.Add(-1)
		s.respond(j, nil, fmt.Errorf("segd is busy: %d slow requests wait; retry later", n-1), api.CodeUnavailable)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		acquired := s.acquire(j, j.stats.slots)
		if acquired {
			if acquired = s.acquire(j, s.slow); !acquired {
				<-j.stats.slots
			}
		}
		s.waiting.Add(-1)
		j.stats.waiting.Add(-1)
		if !acquired {
			return
		}
		defer func() { <-s.slow; <-j.stats.slots }()
		s.run(j)
	}()
}

// acquire takes a slot of sem for j, or answers j 503 if its deadline
// passes or the service stops first.
func (s *Service) acquire(j job, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-j.ctx.Done():
		s.respond(j, nil, s.late(j), api.CodeUnavailable)
	case <-s.stop:
		s.respond(j, nil, errStopping, api.CodeUnavailable)
	}
	j.cancel()
	return false
}

// late says why a request that waited past its deadline was not run.
func (s *Service) late(j job) error {
	return fmt.Errorf("segd is busy: the request waited %s for a worker and passed its deadline; retry later",
		time.Since(j.received).Round(time.Millisecond))
}

func safeParse(d endpointDef, m Membership, data []byte) (work Work, bad *api.ErrorDetail) {
	defer func() {
		if r := recover(); r != nil {
			work, bad = nil, &api.ErrorDetail{Code: api.CodeInternal, Description: fmt.Sprintf("internal error decoding the request: %v", r)}
		}
	}()
	if bad := checkRequest(data); bad != nil {
		return nil, bad
	}
	if d.parseCtx != nil {
		return d.parseCtx(m, data)
	}
	w, bad := d.parse(m, data)
	if bad != nil {
		return nil, bad
	}
	return func(context.Context) (any, error) { return w() }, nil
}

// safeParseMember is safeParse for a member query.
func safeParseMember(d endpointDef, data []byte) (q *memberQuery, bad *api.ErrorDetail) {
	defer func() {
		if r := recover(); r != nil {
			q, bad = nil, &api.ErrorDetail{Code: api.CodeInternal, Description: fmt.Sprintf("internal error decoding the request: %v", r)}
		}
	}()
	if bad := checkRequest(data); bad != nil {
		return nil, bad
	}
	return d.member(data)
}

// answerQuick answers q on micro's goroutine if m can without waiting,
// and says whether it did; if not, q goes to a worker. A lookup that
// would wait never holds the requests behind it this way.
func (s *Service) answerQuick(q *memberQuery, m QuickMembership, reply string, st *endpointStats, received time.Time) bool {
	var (
		rep any
		err error
		ok  bool
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				rep, ok, err = nil, true, fmt.Errorf("internal error: %v", r)
			}
		}()
		rep, ok, err = q.try(m)
	}()
	if !ok {
		return false
	}
	s.respond(job{reply: reply, received: received, stats: st}, rep, err, "")
	return true
}

func (s *Service) worker() {
	defer s.wg.Done()
	for j := range s.jobs {
		s.run(j)
	}
}

// run does the lookup and answers. Replies are published on the connection
// rather than through micro.Request, which is not safe to touch once
// micro's handler has returned.
func (s *Service) run(j job) {
	ctx := j.ctx
	if ctx == nil {
		ctx = context.Background()
	} else {
		defer j.cancel()
	}
	if ctx.Err() != nil || time.Now().After(j.deadline) {
		s.respond(j, nil, s.late(j), api.CodeUnavailable)
		return
	}
	var (
		reply any
		err   error
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error: %v", r)
			}
		}()
		reply, err = j.work(ctx)
	}()
	s.respond(j, reply, err, "")
}

// Error is an error with its reply code (ingest.Error): a 400 found only
// once the work runs, a 409, a 413, a 503.
type Error = ingest.Error

// errorDetail turns a work error into the reply's code, description and
// field: an *Error carries its own, ErrNotFound is a 404, the rest 500.
func errorDetail(err error) api.ErrorDetail {
	var e *Error
	switch {
	case errors.As(err, &e) && e.Code != "":
		return api.ErrorDetail{Code: e.Code, Description: err.Error(), Field: e.Field}
	case errors.Is(err, ErrNotFound):
		return api.ErrorDetail{Code: api.CodeNotFound, Description: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return api.ErrorDetail{Code: api.CodeUnavailable, Description: "the request did not finish within its deadline: " + err.Error()}
	}
	return api.ErrorDetail{Code: api.CodeInternal, Description: err.Error()}
}

// respond publishes the reply, or the error with code (empty: derived from
// err by errorDetail).
func (s *Service) respond(j job, reply any, err error, code string) {
	if j.cancel != nil {
		defer j.cancel()
	}
	if j.reply == "" {
		return
	}
	msg := &nats.Msg{Subject: j.reply}
	defer func() { s.observe(j.stats, answeredCode(msg), j.received) }()
	if err == nil {
		var data []byte
		var merr error
		switch raw := reply.(type) {
		case json.RawMessage:
			data = raw
		case *replyBuf:
			data = raw.b
			defer raw.release() // after the publish, which copies data
		default:
			data, merr = json.Marshal(reply)
		}
		if merr == nil {
			msg.Data = data
			if perr := s.nc.PublishMsg(msg); perr == nil || !errors.Is(perr, nats.ErrMaxPayload) {
				return
			}
			err = &Error{Code: api.CodeTooLarge, Err: fmt.Errorf("the reply (%d bytes) is larger than the server's max payload (%d bytes); ask for less (a smaller limit, segment.export)", len(data), s.nc.MaxPayload())}
		} else {
			err = fmt.Errorf("encoding the reply: %w", merr)
		}
	}
	d := errorDetail(err)
	if code != "" {
		d.Code = code
	}
	j.stats.errors.Add(1)
	j.stats.lastError.Store(d.Code + ":" + d.Description)
	msg.Header = nats.Header{micro.ErrorHeader: {d.Description}, micro.ErrorCodeHeader: {d.Code}}
	msg.Data = errorBody(d)
	_ = s.nc.PublishMsg(msg)
}

// observe tells ServiceOptions.OnRequest of an answered request.
func (s *Service) observe(st *endpointStats, code string, received time.Time) {
	if s.opts.OnRequest != nil && st != nil {
		s.opts.OnRequest(st.name, code, time.Since(received))
	}
}

// answeredCode is the code of a reply respond published: its error code
// header, or "200".
func answeredCode(msg *nats.Msg) string {
	if c := msg.Header.Get(micro.ErrorCodeHeader); c != "" {
		return c
	}
	return "200"
}

// Micro returns the underlying micro service (for Info and Stats).
func (s *Service) Micro() micro.Service { return s.svc }

// Stop unregisters the service, answers the requests already accepted and
// waits for the workers to finish. Call it before closing the connection.
func (s *Service) Stop() error {
	err := s.svc.Stop()
	// Like StartService, return only once the server knows: no request
	// sent after Stop reaches this instance.
	if ferr := s.nc.Flush(); err == nil && ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		err = ferr
	}
	s.stopWorkers()
	return err
}

func (s *Service) stopWorkers() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
		if s.jobs != nil {
			close(s.jobs)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func errorBody(d api.ErrorDetail) []byte {
	b, _ := json.Marshal(api.ErrorBody{Error: d})
	return b
}

func badRequest(format string, args ...any) *api.ErrorDetail {
	return &api.ErrorDetail{Code: api.CodeBadRequest, Description: fmt.Sprintf(format, args...)}
}

func badField(field, desc string) *api.ErrorDetail {
	return &api.ErrorDetail{Code: api.CodeBadRequest, Description: desc, Field: field}
}

// requestUser accepts the same user ids as ingest: a string or an integer.
func requestUser(raw json.RawMessage) (string, *api.ErrorDetail) {
	u, err := decodeUser(raw)
	if err != nil {
		return "", badField("user", err.Error()+`; want e.g. {"user":"u42"}`)
	}
	return u, nil
}

// checkRequest refuses what no endpoint takes, before its decoder runs:
// invalid UTF-8, which encoding/json would silently turn into U+FFFD (two
// different ids would become one).
func checkRequest(data []byte) *api.ErrorDetail {
	if utf8.Valid(data) {
		return nil
	}
	off := 0
	for off < len(data) {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		off += size
	}
	return badRequest("the request is not valid UTF-8 (byte %d); JSON text must be UTF-8", off)
}

// decodeRequest decodes a JSON object strictly: no unknown fields, no
// trailing data, and errors that name the problem and the field.
func decodeRequest(data []byte, v any, emptyOK bool) *api.ErrorDetail {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		if emptyOK {
			return nil
		}
		return badRequest("the request is empty; want a JSON object")
	}
	if data[0] != '{' {
		return badRequest("the request must be a JSON object, found %q at the start", firstRune(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("unexpected data after the JSON object")
	}
	return nil
}

func jsonProblem(err error) *api.ErrorDetail {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		f := typ.Field
		return badField(f, fmt.Sprintf("%q must be a JSON %s, not %s", f, jsonKind(typ.Type.Kind().String()), typ.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: the request ends early")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(f, `"`)
		return badField(name, fmt.Sprintf("unknown field %q", name))
	}
	return badRequest("malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return "number"
}
