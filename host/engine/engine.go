package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
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
	// RetentionDays bounds how old an event may be: older ones are
	// counted and dropped; 0 means rules.DefaultMaxWindowDays.
	RetentionDays int
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// OnChanges, if set, receives every step's membership changes in the
	// order they happened, on the writer goroutine once readers can see
	// them. It must not block for long: ingest waits for it.
	OnChanges func([]Change)
	// Observer, if set, sees every accepted event with its dense user id,
	// on the writer goroutine (the analysis index uses it).
	Observer EventObserver
	// FingerprintExtra, if set, adds to a segment's fingerprint what its
	// source does not say, such as the versions of the plugins it runs.
	FingerprintExtra func(*rules.Segment) string
	// MaxRecoveryRebuilds bounds the rebuilds from the log that may fail
	// again before a stale segment is "failed" and waits for a new plugin
	// version (recovery.go); 0 means DefaultMaxRecoveryRebuilds.
	MaxRecoveryRebuilds int
	// RecoveryBackoff is the wait after the first failed recovery
	// rebuild, doubled after each further one, on Clock; 0 means
	// DefaultRecoveryBackoff.
	RecoveryBackoff time.Duration
	// Revisions are the revisions of the segments defined through the
	// rules admin API (their SEGD_RULES key's), reported by Segments;
	// file-defined segments have none.
	Revisions map[string]uint64
	// MaxUsers bounds the distinct users the engine gives ids to (0, or
	// more than MaxUsers, means MaxUsers); past it, what needs a new id is
	// refused and counted. A partition of P holds 2^32/P users, so that
	// its ids map to global ids (host/scatter).
	MaxUsers uint64

	// evalParallelMin overrides evalParallelMin (tests: 1 judges every
	// step's segments on several goroutines).
	evalParallelMin int
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
	// maxRebuilds and backoff bound the recovery of stale segments.
	maxRebuilds int
	backoff     time.Duration
	// arrivals maps the clock to stream sequences, so that a rebuild
	// reads only the log its windows reach (replay_span.go). Writer only.
	arrivals arrivalIndex

	// Owned by the writer (Run).
	now       int64         // the clock as of the last step, Unix ms
	retention int           // days
	profiles  *profileStore // by dense id
	leaves    []leaf
	leafOf    map[rules.Condition]leaf // while New builds trees
	route     map[string]bool          // event names some rule reads
	order     []*segmentState          // segments in dependency order
	lastSeq   uint64
	// rebuild is the rebuild in progress (rebuild.go); paused are its
	// leaves, which live steps leave alone.
	rebuild *Rebuild
	paused  map[leaf]bool

	users  *dictionary
	limits *idLimits

	// mu guards what readers see: membership and counters.
	mu       sync.RWMutex
	segments []*segmentState // ordered by id
	// byID indexes segments; replaced whole (replace.go) when a segment is
	// added or removed, so that readers look up without the lock.
	byID atomic.Pointer[map[string]*segmentState]
	// extra is Config.FingerprintExtra, kept for definitions that change
	// while segd runs (replace.go).
	extra func(*rules.Segment) string
	stats api.StatusReply

	work workCounters // the writer's work, for metrics (work.go)

	// scratch is the writer's reused buffers for evaluate (step.go),
	// helpers those of the goroutines that judge beside it, evalFree and
	// evalRest its lists of segments.
	scratch            evalScratch
	helpers            []*evalScratch
	evalFree, evalRest []*segmentState
	liveLeaves         []leaf // ingest's list of the leaves not paused
	// parallelMin is the fewest touched users for which a step's segments
	// are judged on several goroutines.
	parallelMin int

	// testHookPrepared, if set, runs on the writer once a step's bitmap
	// work is done and before it is published (tests).
	testHookPrepared func()
}

// segmentState is one segment: its rule's running state and its published
// membership.
type segmentState struct {
	seg *rules.Segment
	membership
	// leaves are the leaf conditions of the rule (not in_segment).
	leaves []leaf
	// refs are the segments the rule reads.
	refs []*segmentState
	// tree is the rule with its leaves' running state in place.
	tree *node
	// empty is the rule's value for a user no leaf keeps anything for.
	empty bool
	// stale is set while the segment's state misses a batch a predicate
	// could not judge (recovery.go). Written under mu.
	stale *staleState
	// plugins are the plugins the rule names (SegmentPlugins).
	plugins []string
	// fingerprint identifies the definition (see Engine.Fingerprint).
	fingerprint string
	// rebuilding is set while the segment is rebuilt from the log
	// (rebuild.go): its membership is not served. Written under mu.
	rebuilding bool
	// evaluations counts the users the rule judged (Work).
	evaluations atomic.Uint64
	// revision is the rules admin API's revision of the definition
	// served (0: from a file); next the revision being rebuilt beside it
	// (replace.go). Written under mu.
	revision, next uint64
	// nextSeg is the definition a replacement rebuilds (replace.go).
	// Written under mu.
	nextSeg *rules.Segment
}

type command struct {
	msg  *ingest.Message // nil for a tick
	fn   func() error    // set for Do
	done chan error
}

// New builds an engine for the segments. Call Run to start it.
func New(cfg Config) *Engine {
	e := &Engine{
		loc:         cfg.Location,
		clock:       cfg.Clock,
		skew:        cfg.MaxFutureSkew,
		tick:        cfg.TickInterval,
		logger:      cfg.Logger,
		retention:   cfg.RetentionDays,
		cmds:        make(chan command),
		onChanges:   cfg.OnChanges,
		observer:    cfg.Observer,
		maxRebuilds: cfg.MaxRecoveryRebuilds,
		parallelMin: cmp.Or(cfg.evalParallelMin, evalParallelMin),
		backoff:     cfg.RecoveryBackoff,
		leafOf:      map[rules.Condition]leaf{},
		route:       map[string]bool{},
		users:       newDictionary(),
		profiles:    newProfileStore(),
		limits:      &idLimits{values: MaxDistinctValues},
		extra:       cfg.FingerprintExtra,
	}
	if cfg.MaxUsers > 0 && cfg.MaxUsers < MaxUsers {
		e.users.limit = cfg.MaxUsers
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
	if e.retention == 0 {
		e.retention = rules.DefaultMaxWindowDays
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.maxRebuilds <= 0 {
		e.maxRebuilds = DefaultMaxRecoveryRebuilds
	}
	if e.backoff <= 0 {
		e.backoff = DefaultRecoveryBackoff
	}
	e.now = e.clock.Now().UnixMilli()
	byID := map[string]*segmentState{}
	e.byID.Store(&byID)
	for _, s := range cfg.Segments {
		st := &segmentState{seg: s, membership: membership{members: roaring.New()}, plugins: SegmentPlugins(s)}
		st.revision = cfg.Revisions[s.ID]
		e.segments = append(e.segments, st)
		byID[s.ID] = st
	}
	sort.Slice(e.segments, func(i, j int) bool { return e.segments[i].seg.ID < e.segments[j].seg.ID })
	for _, st := range e.segments {
		e.buildLeaves(st)
		for _, r := range st.seg.References {
			st.refs = append(st.refs, e.ids()[r])
		}
	}
	e.order = dependencyOrder(e.segments)
	for _, st := range e.order {
		if st.seg.Condition != nil {
			st.tree = e.buildTree(st.seg.Condition)
			st.empty = st.tree.empty()
		}
	}
	e.computeFingerprints(cfg.FingerprintExtra)
	e.stats.Ready = true
	return e
}

// buildLeaves creates the running state of each leaf of a segment's rule.
func (e *Engine) buildLeaves(st *segmentState) {
	rules.Walk(st.seg.Condition, func(c rules.Condition) {
		var l leaf
		switch c := c.(type) {
		case *rules.Did:
			l = newDidLeaf(c, e.loc, e.limits)
			e.routeStep(&c.Step)
		case *rules.Sequence:
			l = newSeqLeaf(c, e.loc)
			for k := range c.Steps {
				e.routeStep(&c.Steps[k])
			}
			if c.ThenNot != nil {
				e.routeStep(c.ThenNot)
			}
		case *rules.ProfileCondition:
			l = newProfileLeaf(c)
		default:
			return
		}
		e.leaves = append(e.leaves, l)
		e.leafOf[c] = l
		st.leaves = append(st.leaves, l)
	})
}

func (e *Engine) routeStep(s *rules.Step) {
	for _, name := range s.Events {
		e.route[name] = true
	}
}

// dependencyOrder lists segments so that each comes after the segments it
// reads (rules.Compile has rejected cycles).
func dependencyOrder(segs []*segmentState) []*segmentState {
	var order []*segmentState
	done := map[*segmentState]bool{}
	var visit func(s *segmentState)
	visit = func(s *segmentState) {
		if done[s] {
			return
		}
		done[s] = true
		for _, r := range s.refs {
			visit(r)
		}
		order = append(order, s)
	}
	for _, s := range segs {
		visit(s)
	}
	return order
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
			e.advanceClock(ctx)
		case c := <-e.cmds:
			if c.fn != nil {
				c.done <- c.fn()
				continue
			}
			if c.msg == nil {
				e.advanceClock(ctx)
				c.done <- nil
				continue
			}
			start := time.Now()
			err := e.apply(ctx, c.msg)
			e.work.applied.Add(1)
			e.work.applyNanos.Add(uint64(time.Since(start)))
			c.done <- err
		}
	}
}

// Apply implements ingest.Ingester: it hands the message to Run and waits until
// it is applied. A message at or below the last applied stream sequence is a
// redelivery and changes nothing.
func (e *Engine) Apply(ctx context.Context, msg *ingest.Message) error {
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

type membershipDelta struct {
	enter, exit []uint32
	// pending indexes enter and exit for member, built on its first call:
	// most segments are read by no other, and a map write per change was
	// a tenth of a step (BenchmarkIngest100Rules). Exact because the
	// members do not change within a step (publish applies them): set
	// records a user in enter only if not a member and in exit only if
	// one, so the two lists never share a user.
	pending map[uint32]bool
}

func (c changeSet) set(s *segmentState, user uint32, member bool) {
	if member == s.members.Contains(user) {
		return
	}
	c.delta(s).add(user, member)
}

// setMany records in d, made if nil, that s's member us[i] is now
// member[i] for each i where that changes something, and returns d.
func (d *membershipDelta) setMany(s *segmentState, us []uint32, member []bool) *membershipDelta {
	for i, u := range us {
		if member[i] == s.members.Contains(u) {
			continue
		}
		if d == nil {
			d = &membershipDelta{}
		}
		d.add(u, member[i])
	}
	return d
}

// delta returns s's delta, made on first use.
func (c changeSet) delta(s *segmentState) *membershipDelta {
	d := c[s]
	if d == nil {
		d = &membershipDelta{}
		c[s] = d
	}
	return d
}

func (d *membershipDelta) add(user uint32, member bool) {
	if d.pending != nil {
		d.pending[user] = member
	}
	if member {
		d.enter = append(d.enter, user)
	} else {
		d.exit = append(d.exit, user)
	}
}

// enterAll records in d, made if needed, that the users (ascending) of
// users who are not members of s enter it, and returns d: set(s, u, true)
// for each, with one bitmap difference instead of a lookup per user.
// users is changed.
func (d *membershipDelta) enterAll(s *segmentState, users *roaring.Bitmap) *membershipDelta {
	users.AndNot(s.members)
	if users.IsEmpty() {
		return d
	}
	if d == nil {
		d = &membershipDelta{}
	}
	at := len(d.enter)
	d.enter = append(d.enter, users.ToArray()...)
	if d.pending != nil {
		for _, u := range d.enter[at:] {
			d.pending[u] = true
		}
	}
	return d
}

// member reports a user's membership including this step's changes, which
// segments that read s see before readers do.
func (c changeSet) member(s *segmentState, user uint32) bool {
	if d := c[s]; d != nil {
		if d.pending == nil {
			d.pending = make(map[uint32]bool, len(d.enter)+len(d.exit))
			for _, u := range d.enter {
				d.pending[u] = true
			}
			for _, u := range d.exit {
				d.pending[u] = false
			}
		}
		if m, ok := d.pending[user]; ok {
			return m
		}
	}
	return s.members.Contains(user)
}

// publish applies the changes to the bitmaps readers see. The per-user
// bitmap work is done first, on the writer's copy-on-write bitmaps, without
// the lock; the lock is held only to swap in the frozen copies, record the
// entered users' since and the history, and update the counters, so that
// readers never wait for a step's bitmap updates.
func (e *Engine) publish(changes changeSet, update func(*api.StatusReply)) {
	now := e.clock.Now()
	today := dayOf(now.UnixMilli(), e.loc)
	prepared := e.prepare(changes)
	if e.testHookPrepared != nil {
		e.testHookPrepared()
	}
	e.mu.Lock()
	for i := range prepared {
		prepared[i].s.commit(&prepared[i], now, today)
	}
	update(&e.stats)
	e.stats.Users = uint64(len(e.users.names)) // only this goroutine appends
	e.stats.Clock = now.In(e.loc).Format(time.RFC3339)
	e.mu.Unlock()
	if e.onChanges == nil || len(changes) == 0 {
		return
	}
	n := 0
	for _, d := range changes {
		n += len(d.enter) + len(d.exit)
	}
	out := make([]Change, 0, n)
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

// prepare prepares each changed segment's membership (membership.prepare),
// in id order. With many changes, on several goroutines: a segment's
// preparing touches only its own bitmaps (a copy-on-write container they
// share with a capture or a view is only read).
func (e *Engine) prepare(changes changeSet) []pendingMembership {
	prepared := make([]pendingMembership, 0, len(changes))
	var deltas []*membershipDelta
	n := 0
	for _, s := range e.segments { // in id order, so that OnChanges sees a stable order
		if d := changes[s]; d != nil {
			prepared = append(prepared, pendingMembership{s: s})
			deltas = append(deltas, d)
			n += len(d.enter) + len(d.exit)
		}
	}
	do := func(i int) {
		s, d := prepared[i].s, deltas[i]
		prepared[i] = s.prepare(s, d.enter, d.exit)
	}
	workers := min(runtime.GOMAXPROCS(0), maxEvalWorkers, len(prepared))
	// A quarter of evaluate's threshold: copy-on-write clones make a
	// change cost more than a judged user.
	if workers < 2 || n < e.parallelMin/4 {
		for i := range prepared {
			do(i)
		}
		return prepared
	}
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < len(prepared); i = int(next.Add(1) - 1) {
			do(i)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return prepared
}

// unknownSegmentError is the 404 of an unknown segment: it is
// ingest.ErrNotFound without repeating "not found" in the text users read.
type unknownSegmentError struct{ segment string }

func (e unknownSegmentError) Error() string {
	return fmt.Sprintf("segment %q is not defined", e.segment)
}
func (e unknownSegmentError) Is(target error) bool { return target == ingest.ErrNotFound }

func errNotFound(segment string) error { return unknownSegmentError{segment} }

// IsMember implements bus.Membership.
func (e *Engine) IsMember(user, segment string) (bool, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return false, errNotFound(segment)
	}
	id, ok := e.users.lookup(user)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.servable(s); err != nil {
		return false, err
	}
	return ok && s.contains(id), nil
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
		if s.served() && s.contains(id) {
			out = append(out, s.seg.ID)
		}
	}
	return out
}

// UnavailableSegments lists, in id order, the segments whose membership is
// not served now (rebuilding, stale or failed), which UserSegments and
// UserMemberships leave out.
func (e *Engine) UnavailableSegments() []string {
	var out []string
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, s := range e.segments {
		if !s.served() {
			out = append(out, s.seg.ID)
		}
	}
	return out
}

// SegmentCount implements bus.Membership.
func (e *Engine) SegmentCount(segment string) (uint64, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return 0, errNotFound(segment)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.servable(s); err != nil {
		return 0, err
	}
	return s.frozen().GetCardinality(), nil
}

// Members returns the external ids of a segment's members, sorted.
func (e *Engine) Members(segment string) ([]string, error) {
	s, ok := e.ids()[segment]
	if !ok {
		return nil, errNotFound(segment)
	}
	e.mu.RLock()
	if err := e.servable(s); err != nil {
		e.mu.RUnlock()
		return nil, err
	}
	view := s.frozen()
	e.mu.RUnlock()
	ids := view.ToArray() // the view never changes: no lock needed
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
			Size:        s.frozen().GetCardinality(),
			Status:      "active",
		}
		if s.stale != nil {
			info.Status, info.Error, info.Stale = e.staleWord(s), s.stale.reason, e.staleStatus(s)
		}
		if s.rebuilding {
			info.Status, info.Size = "rebuilding", 0
			for _, p := range e.stats.Rebuilding {
				if p.Segment == s.seg.ID {
					info.Rebuild = &api.RebuildStatus{Segment: p.Segment, Seq: p.Seq, ToSeq: p.ToSeq}
				}
			}
		}
		e.revisionInfo(s, &info)
		for pred := range rules.Predicates(s.seg.Condition) {
			addEvalErrors(&info, pred)
		}
		out = append(out, info)
	}
	return out
}

// addEvalErrors adds a predicate's evaluation errors to a segment's info.
func addEvalErrors(info *api.SegmentInfo, pred any) {
	if st, ok := pred.(rules.EvalStats); ok {
		if n, last := st.EvalErrors(); n > 0 {
			info.EvalErrors += n
			info.LastEvalError = last
		}
	}
}

// Status implements bus.Membership.
func (e *Engine) Status() api.StatusReply {
	e.mu.RLock()
	defer e.mu.RUnlock()
	st := e.stats
	st.Rebuilding = append([]api.RebuildStatus(nil), st.Rebuilding...)
	for _, s := range e.segments {
		if s.stale != nil {
			st.Stale = append(st.Stale, *e.staleStatus(s))
		}
	}
	return st
}

var _ ingest.Ingester = (*Engine)(nil)
