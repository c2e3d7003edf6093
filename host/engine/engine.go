package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/rules"
)

// Config configures an Engine.
type Config struct {
	// Segments are the compiled rules, ordered by id.
	Segments []*rules.Segment
	// Location is the time zone of calendar days; nil means UTC.
	Location *time.Location
	// Clock drives windows; nil means the system clock.
	Clock Clock
	// MaxFutureSkew rejects events further ahead of the clock than this;
	// 0 means DefaultMaxFutureSkew.
	MaxFutureSkew time.Duration
	// TickInterval is how often Run looks at the clock to move windows;
	// 0 means one second.
	TickInterval time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// OnChanges, if set, receives every step's membership changes in the
	// order they happened, on the writer goroutine once readers can see
	// them. It must not block for long: ingest waits for it.
	OnChanges func([]Change)
	// Observer, if set, sees every accepted event with its dense user id,
	// on the writer goroutine (the analysis index uses it).
	Observer EventObserver
}

// EventObserver receives the accepted events of each batch. users[i] is the
// dense id of events[i].User. The slices are reused after the call.
type EventObserver interface {
	ObserveEvents(events []rules.Event, users []uint32)
}

// DefaultMaxFutureSkew is how far ahead of the clock an event may be:
// producers' clocks drift, but an event a day ahead is a bug.
const DefaultMaxFutureSkew = 5 * time.Minute

// Engine keeps every segment current. Apply and Tick are served by Run, one
// at a time; the read methods are safe from any goroutine while Run works.
type Engine struct {
	loc       *time.Location
	clock     Clock
	skew      time.Duration
	tick      time.Duration
	logger    *slog.Logger
	cmds      chan command
	onChanges func([]Change)
	observer  EventObserver

	// Owned by the writer (Run).
	today    dayIndex
	days     dayCache
	profiles []map[string]any // by dense id
	did      []*didState
	attr     []*attrState
	route    map[string][]*didState // event name → rules that read it
	lastSeq  uint64

	users *dictionary

	// mu guards what readers see: membership and counters.
	mu       sync.RWMutex
	segments []*segmentState // ordered by id
	byID     map[string]*segmentState
	stats    api.StatusReply
}

// segmentState is one segment's published membership.
type segmentState struct {
	seg *rules.Segment
	membership
	// failure is the latest error of the segment's predicate as a whole
	// (a plugin that failed a batch): the segment is then incomplete.
	failure string
}

type command struct {
	msg  *bus.IngestMessage // nil for a tick
	done chan error
}

// New builds an engine for the segments. Call Run to start it.
func New(cfg Config) *Engine {
	e := &Engine{
		loc:       cfg.Location,
		clock:     cfg.Clock,
		skew:      cfg.MaxFutureSkew,
		tick:      cfg.TickInterval,
		logger:    cfg.Logger,
		cmds:      make(chan command),
		onChanges: cfg.OnChanges,
		observer:  cfg.Observer,
		route:     map[string][]*didState{},
		users:     newDictionary(),
		byID:      map[string]*segmentState{},
	}
	if e.loc == nil {
		e.loc = time.UTC
	}
	if e.clock == nil {
		e.clock = SystemClock{}
	}
	if e.skew == 0 {
		e.skew = DefaultMaxFutureSkew
	}
	if e.tick == 0 {
		e.tick = time.Second
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	e.days.loc = e.loc
	e.today = dayOf(e.clock.Now().UnixMilli(), e.loc)
	for _, s := range cfg.Segments {
		st := &segmentState{seg: s, membership: membership{members: roaring.New()}}
		e.segments = append(e.segments, st)
		e.byID[s.ID] = st
		switch {
		case s.Did != nil:
			d := newDidState(st)
			e.did = append(e.did, d)
			for _, name := range s.Did.Events {
				e.route[name] = append(e.route[name], d)
			}
		case s.Profile != nil:
			e.attr = append(e.attr, &attrState{segment: st})
		}
	}
	sort.Slice(e.segments, func(i, j int) bool { return e.segments[i].seg.ID < e.segments[j].seg.ID })
	e.stats.Ready = true
	return e
}

// Run applies batches and clock ticks until ctx ends. It is the engine's
// only writer.
func (e *Engine) Run(ctx context.Context) error {
	ticker := time.NewTicker(e.tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			e.advanceClock()
		case c := <-e.cmds:
			if c.msg == nil {
				e.advanceClock()
				c.done <- nil
				continue
			}
			c.done <- e.apply(ctx, c.msg)
		}
	}
}

// Apply implements bus.Ingester: it hands the message to Run and waits until
// it is applied. A message at or below the last applied stream sequence is a
// redelivery and changes nothing.
func (e *Engine) Apply(ctx context.Context, msg *bus.IngestMessage) error {
	return e.do(ctx, command{msg: msg, done: make(chan error, 1)})
}

// Tick makes Run look at the clock now, moving windows if a day boundary
// has passed, and waits until it has. Run also does this on its own every
// TickInterval; tests call Tick after moving a ManualClock.
func (e *Engine) Tick(ctx context.Context) error {
	return e.do(ctx, command{done: make(chan error, 1)})
}

func (e *Engine) do(ctx context.Context, c command) error {
	select {
	case e.cmds <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// changeSet collects one step's membership changes per segment, to be
// published under the lock in one go.
type changeSet map[*segmentState]*membershipDelta

type membershipDelta struct{ enter, exit []uint32 }

func (c changeSet) set(s *segmentState, user uint32, member bool) {
	if member == s.members.Contains(user) {
		return
	}
	d := c[s]
	if d == nil {
		d = &membershipDelta{}
		c[s] = d
	}
	if member {
		d.enter = append(d.enter, user)
	} else {
		d.exit = append(d.exit, user)
	}
}

// publish applies the changes to the bitmaps readers see. Reading
// s.members.Contains without the lock in set is safe: only this goroutine
// writes the bitmaps.
func (e *Engine) publish(changes changeSet, update func(*api.StatusReply)) {
	now := e.clock.Now()
	e.mu.Lock()
	for _, s := range e.segments { // in id order, so that OnChanges sees a stable order
		if d := changes[s]; d != nil {
			s.apply(d.enter, d.exit, now, e.today)
		}
	}
	update(&e.stats)
	e.stats.Users = uint64(len(e.profiles))
	e.stats.Clock = now.In(e.loc).Format(time.RFC3339)
	e.mu.Unlock()
	if e.onChanges == nil || len(changes) == 0 {
		return
	}
	var out []Change
	for _, s := range e.segments {
		d := changes[s]
		if d == nil {
			continue
		}
		for _, u := range d.enter {
			out = append(out, Change{Segment: s.seg.ID, User: e.users.names[u], Enter: true, Time: now})
		}
		for _, u := range d.exit {
			out = append(out, Change{Segment: s.seg.ID, User: e.users.names[u], Time: now})
		}
	}
	e.onChanges(out)
}

func (e *Engine) apply(ctx context.Context, msg *bus.IngestMessage) error {
	if msg.Seq != 0 && msg.Seq <= e.lastSeq {
		return nil // a redelivery: already applied
	}
	e.advanceClock()
	changes := changeSet{}
	if msg.Err != nil {
		e.logger.Warn("skipped a message that is not a batch", "seq", msg.Seq, "subject", msg.Subject, "error", msg.Err)
		e.lastSeq = max(e.lastSeq, msg.Seq)
		e.publish(changes, func(s *api.StatusReply) {
			s.NotBatches++
			s.LastNotBatch = fmt.Sprintf("seq %d on %s: %v", msg.Seq, msg.Subject, msg.Err)
			s.LastSeq = e.lastSeq
		})
		return nil
	}
	b := &msg.Batch
	var tooNew uint64
	fresh := roaring.New() // users seen for the first time
	var uploaded uint64
	if msg.Upload != nil {
		uploaded = e.upload(msg, fresh, changes)
	}

	// Users of events and of profile updates, interned in one pass each.
	names := make([]string, 0, len(b.Events))
	for i := range b.Events {
		names = append(names, b.Events[i].User)
	}
	eventUsers := make([]uint32, len(names))
	e.users.intern(names, eventUsers, func(id uint32) { fresh.Add(id) })
	names = names[:0]
	for i := range b.Profiles {
		names = append(names, b.Profiles[i].User)
	}
	profileUsers := make([]uint32, len(names))
	e.users.intern(names, profileUsers, func(id uint32) { fresh.Add(id) })
	for len(e.profiles) < e.users.size() {
		e.profiles = append(e.profiles, nil)
	}

	// Profiles merge; nil removes an attribute.
	profiled := fresh.Clone()
	for i, up := range b.Profiles {
		id := profileUsers[i]
		attrs := e.profiles[id]
		if attrs == nil {
			attrs = make(map[string]any, len(up.Attrs))
			e.profiles[id] = attrs
		}
		for k, v := range up.Attrs {
			if v == nil {
				delete(attrs, k)
			} else {
				attrs[k] = v
			}
		}
		profiled.Add(id)
	}

	// Event days; events too far ahead of the clock are rejected.
	limit := e.clock.Now().Add(e.skew).UnixMilli()
	days := make([]dayIndex, len(b.Events))
	accepted := make([]bool, len(b.Events))
	for i := range b.Events {
		if b.Events[i].Time > limit {
			tooNew++
			continue
		}
		accepted[i] = true
		days[i] = e.days.dayOf(b.Events[i].Time)
	}

	// Behavioral rules, routed by event name.
	byName := map[string][]int{}
	for i := range b.Events {
		if accepted[i] && len(e.route[b.Events[i].Name]) > 0 {
			byName[b.Events[i].Name] = append(byName[b.Events[i].Name], i)
		}
	}
	for _, d := range e.did {
		d.ingest(ctx, e, b.Events, eventUsers, days, byName, changes)
	}
	if e.observer != nil {
		e.observe(b.Events, eventUsers, accepted)
	}
	// Users new to the universe are judged by every rule that can hold for
	// a user with no events (count < 3, say).
	for _, d := range e.did {
		if d.zeroMember {
			it := fresh.Iterator()
			for it.HasNext() {
				u := it.Next()
				changes.set(d.segment, u, d.member(u, e.today))
			}
		}
	}
	for _, a := range e.attr {
		a.evaluate(ctx, e, profiled, changes)
	}

	e.lastSeq = max(e.lastSeq, msg.Seq)
	e.publish(changes, func(s *api.StatusReply) {
		s.Uploads += uploaded
		s.Batches++
		s.Events += uint64(len(b.Events)) - tooNew
		s.Profiles += uint64(len(b.Profiles))
		s.TooNew += tooNew
		s.InvalidItems += uint64(b.Invalid)
		if b.FirstInvalid != "" && s.FirstInvalid == "" {
			s.FirstInvalid = fmt.Sprintf("seq %d on %s: %s", msg.Seq, msg.Subject, b.FirstInvalid)
		}
		s.LastSeq = e.lastSeq
	})
	return nil
}

// advanceClock moves windows to the clock's day. Users whose counted days
// leave a window, or whose future-dated events enter one, are judged again:
// members leave with no new event.
func (e *Engine) advanceClock() {
	today := dayOf(e.clock.Now().UnixMilli(), e.loc)
	if today <= e.today {
		e.publish(nil, func(*api.StatusReply) {})
		return
	}
	from := e.today
	e.today = today
	changes := changeSet{}
	for _, d := range e.did {
		d.rollover(from, today, changes)
	}
	e.publish(changes, func(*api.StatusReply) {})
}

// upload applies a static segment upload; it returns 1 when applied. An
// upload for a segment that is not static is logged and counted, not
// retried: the service checks before publishing, so only a rule change
// between publishing and applying gets here.
func (e *Engine) upload(msg *bus.IngestMessage, fresh *roaring.Bitmap, changes changeSet) uint64 {
	up := msg.Upload
	s, ok := e.byID[up.Segment]
	if !ok || !s.seg.Static {
		e.logger.Warn("ignored an upload for a segment that is not static", "seq", msg.Seq, "segment", up.Segment)
		e.publish(nil, func(st *api.StatusReply) { st.RejectedUploads++ })
		return 0
	}
	ids := make([]uint32, len(up.Users))
	e.users.intern(up.Users, ids, func(id uint32) { fresh.Add(id) })
	for len(e.profiles) < e.users.size() {
		e.profiles = append(e.profiles, nil)
	}
	next := roaring.BitmapOf(ids...)
	if up.Replace {
		it := s.members.Iterator()
		for it.HasNext() {
			if u := it.Next(); !next.Contains(u) {
				changes.set(s, u, false)
			}
		}
	}
	it := next.Iterator()
	for it.HasNext() {
		changes.set(s, it.Next(), true)
	}
	return 1
}

// observe hands the accepted events to the observer.
func (e *Engine) observe(events []rules.Event, users []uint32, accepted []bool) {
	evs := make([]rules.Event, 0, len(events))
	ids := make([]uint32, 0, len(events))
	for i := range events {
		if accepted[i] {
			evs = append(evs, events[i])
			ids = append(ids, users[i])
		}
	}
	e.observer.ObserveEvents(evs, ids)
}

// unknownSegmentError is the 404 of an unknown segment: it is
// bus.ErrNotFound without repeating "not found" in the text users read.
type unknownSegmentError struct{ segment string }

func (e unknownSegmentError) Error() string {
	return fmt.Sprintf("segment %q is not defined", e.segment)
}
func (e unknownSegmentError) Is(target error) bool { return target == bus.ErrNotFound }

func errNotFound(segment string) error { return unknownSegmentError{segment} }

// IsMember implements bus.Membership.
func (e *Engine) IsMember(user, segment string) (bool, error) {
	s, ok := e.byID[segment]
	if !ok {
		return false, errNotFound(segment)
	}
	id, ok := e.users.lookup(user)
	if !ok {
		return false, nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return s.members.Contains(id), nil
}

// UserSegments implements bus.Membership.
func (e *Engine) UserSegments(user string) []string {
	out := []string{}
	id, ok := e.users.lookup(user)
	if !ok {
		return out
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, s := range e.segments {
		if s.members.Contains(id) {
			out = append(out, s.seg.ID)
		}
	}
	return out
}

// SegmentCount implements bus.Membership.
func (e *Engine) SegmentCount(segment string) (uint64, error) {
	s, ok := e.byID[segment]
	if !ok {
		return 0, errNotFound(segment)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return s.members.GetCardinality(), nil
}

// Members returns the external ids of a segment's members, sorted.
func (e *Engine) Members(segment string) ([]string, error) {
	s, ok := e.byID[segment]
	if !ok {
		return nil, errNotFound(segment)
	}
	e.mu.RLock()
	ids := s.members.ToArray()
	e.mu.RUnlock()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = e.users.name(id)
	}
	sort.Strings(out)
	return out, nil
}

// Segments implements bus.Membership.
func (e *Engine) Segments() []api.SegmentInfo {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]api.SegmentInfo, 0, len(e.segments))
	for _, s := range e.segments {
		info := api.SegmentInfo{
			ID:          s.seg.ID,
			Kind:        s.seg.Kind(),
			Description: s.seg.Description,
			Size:        s.members.GetCardinality(),
			Status:      "active",
		}
		if s.failure != "" {
			info.Status, info.Error = "failed", s.failure
		}
		var pred any
		switch {
		case s.seg.Did != nil:
			pred = s.seg.Did.Where
		case s.seg.Profile != nil:
			pred = s.seg.Profile.Predicate
		}
		if st, ok := pred.(rules.EvalStats); ok {
			info.EvalErrors, info.LastEvalError = st.EvalErrors()
		}
		out = append(out, info)
	}
	return out
}

// Status implements bus.Membership.
func (e *Engine) Status() api.StatusReply {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.stats
}

// failSegment records that a segment's predicate failed a whole batch: the
// segment is incomplete until it succeeds again. Writer only.
func (e *Engine) failSegment(s *segmentState, err error) {
	msg := err.Error()
	e.logger.Error("segment predicate failed; the segment is incomplete", "segment", s.seg.ID, "error", msg)
	e.mu.Lock()
	s.failure = msg
	e.mu.Unlock()
}

var _ bus.Ingester = (*Engine)(nil)
var _ bus.Membership = (*Engine)(nil)
