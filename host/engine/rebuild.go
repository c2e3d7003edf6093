package engine

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

// A rebuild recomputes some segments' state from the event log while the
// engine serves the others: a rule that is new, or whose definition
// changed, since the state was taken.
//
// It starts (StartRebuild) at the engine's last applied sequence, S0: the
// segments are marked rebuilding, their leaves start empty and live steps
// stop feeding them; from then on every message the live path applies is
// also kept for the rebuild. Rebuild.Run then reads the retained log up to
// S0 from a RebuildSource, outside the writer, and feeds it to those
// leaves only, a chunk per writer step (so that ingest, ticks and readers
// go on between chunks). Its last step feeds the kept live messages, which
// brings the leaves to the engine's last sequence, judges every known user
// for the segments in dependency order, publishes the membership in one
// go and serves the segments again. Nothing else is touched: not the
// dictionary, profiles, counters, the analysis index or the other
// segments. Profile updates in the log are not replayed: profiles are
// current, so the profile conditions of the rebuilt segments are judged on
// every user's current profile.
//
// Until then the rebuilt segments answer membership questions with
// ErrRebuilding (a 503), are left out of a user's segments, show as
// "rebuilding" with progress in Segments and Status, and are written to
// snapshots as stale (a restart rebuilds them again).

// RebuildSource yields the messages of the events stream in sequence
// order, from the first the rebuilt windows may need (Rebuild.FromSeq, or
// the stream's first), up to the rebuild's ToSeq. It returns io.EOF when no
// message at or below ToSeq remains. Messages beyond ToSeq are ignored.
type RebuildSource interface {
	Next(ctx context.Context) (*ingest.Message, error)
}

// ErrRebuilding is returned by membership queries about a segment being
// rebuilt from the log; it is a 503 on the service.
var ErrRebuilding = errors.New("segment is being rebuilt from the event log")

func errRebuilding(segment string) error {
	return &ingest.Error{Code: api.CodeUnavailable, Err: fmt.Errorf("%w: %q (see its status for progress)", ErrRebuilding, segment)}
}

// Rebuild is a rebuild in progress; see StartRebuild.
type Rebuild struct {
	e     *Engine
	segs  []*segmentState // in dependency order
	toSeq uint64
	// fromSeq is the first sequence the segments' windows need
	// (replay_span.go).
	fromSeq uint64
	now     int64 // the clock the rebuilt leaves have seen
	seq     uint64
	// leaves are the rebuilt segments' leaves; static their uploaded
	// members.
	leaves []leaf
	static map[*segmentState]*roaring.Bitmap
	// live are the messages applied by the live path since the start.
	live []*ingest.Message
	// Skipped counts events of users the dictionary does not know (never
	// accepted live, e.g. too far ahead of the clock when they arrived):
	// they would add users to the universe, so they are left out.
	skipped uint64
	chunk   int // messages per writer step
	// failed are the segments a predicate of which failed the rebuild,
	// with the first error and its message's sequence; their leaves are
	// fed no more, and the segments stay stale (recovery.go).
	failed map[*segmentState]rebuildFailure
	// target, for a replacement (replace.go), is the served segment that
	// the one rebuilt (segs[0], hidden from readers) replaces when done.
	target *segmentState
}

type rebuildFailure struct {
	err error
	seq uint64
}

// RebuildResult says what a finished rebuild did.
type RebuildResult struct {
	Segments []string
	// FromSeq and ToSeq are the sequences the log was read from and to;
	// Messages counts the messages of the log fed, Live those applied
	// meanwhile and fed last.
	FromSeq, ToSeq uint64
	Messages, Live uint64
	// Events counts the events of the log's messages fed.
	Events uint64
	// SkippedEvents counts events of users the engine never accepted.
	SkippedEvents uint64
}

// StartRebuild marks segments (and the segments that read them) as
// rebuilding and resets their rule state; their membership is kept for
// diffs but not served until Run finishes. Writer only: before Run, or
// inside Do. One rebuild at a time.
func (e *Engine) StartRebuild(ids []string) (*Rebuild, error) {
	if e.rebuild != nil {
		return nil, ErrRebuildRunning
	}
	want := map[*segmentState]bool{}
	for _, id := range ids {
		s, ok := e.ids()[id]
		if !ok {
			return nil, errNotFound(id)
		}
		want[s] = true
	}
	r := &Rebuild{e: e, toSeq: e.lastSeq, now: e.now, static: map[*segmentState]*roaring.Bitmap{}, chunk: rebuildChunk,
		failed: map[*segmentState]rebuildFailure{}}
	for _, s := range e.order { // references first, so dependents follow
		for _, ref := range s.refs {
			if want[ref] {
				want[s] = true
			}
		}
		if want[s] {
			r.segs = append(r.segs, s)
		}
	}
	if len(r.segs) == 0 {
		return nil, errors.New("no segment to rebuild")
	}
	r.fromSeq = e.replayFrom(r.segs)
	if e.paused == nil {
		e.paused = map[leaf]bool{}
	}
	for _, s := range r.segs {
		old := map[leaf]bool{}
		for _, l := range s.leaves {
			old[l] = true
		}
		e.leaves = removeLeaves(e.leaves, old)
		s.leaves = nil
		e.buildLeaves(s)
		if s.seg.Condition != nil {
			s.tree = e.buildTree(s.seg.Condition)
			s.empty = s.tree.empty()
		}
		for _, l := range s.leaves {
			e.paused[l] = true
			r.leaves = append(r.leaves, l)
		}
		if s.tree == nil {
			r.static[s] = roaring.New()
		}
	}
	e.rebuild = r
	e.mu.Lock()
	for _, s := range r.segs {
		s.rebuilding = true
		if s.stale != nil { // the mark stays until the rebuild succeeds
			s.stale.usable, s.stale.newVersion = false, false
		}
	}
	e.stats.Rebuilding = r.progress()
	e.mu.Unlock()
	return r, nil
}

func removeLeaves(ls []leaf, drop map[leaf]bool) []leaf {
	out := ls[:0]
	for _, l := range ls {
		if !drop[l] {
			out = append(out, l)
		}
	}
	clear(ls[len(out):])
	return out
}

// progress is the status's view of the rebuild. Writer only.
func (r *Rebuild) progress() []api.RebuildStatus {
	out := make([]api.RebuildStatus, len(r.segs))
	for i, s := range r.segs {
		out[i] = api.RebuildStatus{Segment: s.seg.ID, Seq: r.seq, ToSeq: r.toSeq}
	}
	return out
}

// ToSeq is the last sequence the rebuild reads from the log: the engine's
// last applied sequence when it started.
func (r *Rebuild) ToSeq() uint64 { return r.toSeq }

// Segments lists the rebuilt segments, those that read them included.
func (r *Rebuild) Segments() []string {
	out := make([]string, len(r.segs))
	for i, s := range r.segs {
		out[i] = s.seg.ID
	}
	return out
}

// rebuildChunk is how many messages one writer step feeds.
const rebuildChunk = 64

// Run reads src to the end and feeds it, then the live messages kept
// meanwhile, to the rebuilt segments, and serves them. It blocks until
// done and needs the engine's Run loop. On an error (src failing, ctx
// ending) the segments stay rebuilding until Abort (recovery.go) makes
// them stale again. Segments a predicate of which fails on the log stay
// stale, with their membership as it was.
func (r *Rebuild) Run(ctx context.Context, src RebuildSource) (RebuildResult, error) {
	res := RebuildResult{Segments: r.Segments(), FromSeq: r.fromSeq, ToSeq: r.toSeq}
	eof := false
	for !eof {
		chunk := make([]*ingest.Message, 0, r.chunk)
		for len(chunk) < r.chunk {
			msg, err := src.Next(ctx)
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return res, fmt.Errorf("rebuild: reading the log: %w", err)
			}
			if msg.Seq > r.toSeq {
				eof = true
				break
			}
			chunk = append(chunk, msg)
		}
		res.Messages += uint64(len(chunk))
		for _, m := range chunk {
			res.Events += uint64(len(m.Batch.Events))
		}
		// Do returns when ctx ends even if fn is still to run or running
		// on the writer: fn writes only its own variable, read once Do
		// has returned fn's result.
		var live uint64
		err := r.e.Do(ctx, func() error {
			if r.e.rebuild != r {
				return errDiscarded // a replacement dropped (replace.go)
			}
			r.step(ctx, chunk)
			if eof {
				live = uint64(len(r.live))
				r.finish(ctx)
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		if eof {
			res.Live = live
		}
	}
	res.SkippedEvents = r.skipped
	return res, nil
}

// step feeds messages to the rebuilt leaves at the engine's clock. Writer.
func (r *Rebuild) step(ctx context.Context, msgs []*ingest.Message) {
	e := r.e
	e.advanceClock(ctx)
	r.catchUp()
	for _, msg := range msgs {
		if msg.Seq != 0 && msg.Seq <= r.seq {
			continue
		}
		r.feed(ctx, msg)
		r.seq = max(r.seq, msg.Seq)
	}
	e.publish(nil, func(st *api.StatusReply) { st.Rebuilding = r.progress() })
}

// catchUp moves the rebuilt leaves' windows to the engine's clock.
func (r *Rebuild) catchUp() {
	if r.e.now <= r.now {
		return
	}
	scratch := roaring.New()
	for _, l := range r.leaves {
		l.advance(r.now, r.e.now, scratch)
	}
	r.now = r.e.now
}

// feed gives one message to the rebuilt leaves, as apply does to all.
func (r *Rebuild) feed(ctx context.Context, msg *ingest.Message) {
	e := r.e
	if msg.Err != nil {
		return
	}
	if up := msg.Upload; up != nil {
		if s := r.staticSegment(up.Segment); s != nil && r.static[s] != nil && s.seg.Static {
			next := roaring.New()
			for _, name := range up.Users {
				if id, ok := e.users.lookup(name); ok {
					next.Add(id)
				}
			}
			if up.Replace {
				r.static[s] = next
			} else {
				r.static[s].Or(next)
			}
		}
	}
	b := &msg.Batch
	now := e.now
	limit := now + e.skew.Milliseconds()
	oldest := (dayOf(now, e.loc) - dayIndex(e.retention) + 1).Start(e.loc)
	view := &batchView{byName: map[string][]int{}, now: now, profiled: roaring.New(),
		profiles: e.profiles, names: e.users.names}
	for i := range b.Events {
		ev := &b.Events[i]
		if ev.Time > limit || ev.Time < oldest {
			continue
		}
		id, ok := e.users.lookup(ev.User)
		if !ok {
			r.skipped++
			continue
		}
		view.events = append(view.events, *ev)
		view.users = append(view.users, id)
	}
	if len(view.events) == 0 {
		return
	}
	for i := range view.events {
		if name := view.events[i].Name; e.route[name] {
			view.byName[name] = append(view.byName[name], i)
		}
	}
	r.ingest(ctx, view, msg.Seq)
}

// ingest hands a view (of stream sequence seq) to the rebuilt leaves of
// the segments no predicate of which has failed the rebuild.
func (r *Rebuild) ingest(ctx context.Context, view *batchView, seq uint64) {
	scratch := roaring.New()
	for _, s := range r.segs {
		if _, ok := r.failed[s]; ok {
			continue
		}
		for _, l := range s.leaves {
			if err := l.ingest(ctx, view, scratch); err != nil {
				r.e.logger.Error("segment predicate failed a batch of the log while rebuilding; the segment stays stale",
					"segment", s.seg.ID, "seq", seq, "error", err)
				r.failed[s] = rebuildFailure{err: err, seq: seq}
				break
			}
		}
	}
}

// finish feeds the live messages, judges every user for the rebuilt
// segments and serves them. Writer only.
func (r *Rebuild) finish(ctx context.Context) {
	e := r.e
	for _, msg := range r.live {
		if msg.Seq != 0 && msg.Seq <= r.seq {
			continue
		}
		r.feed(ctx, msg)
		r.seq = max(r.seq, msg.Seq)
	}
	r.live = nil
	r.catchUp()
	n := e.users.size()
	// Profiles are current: judge everyone's.
	all := roaring.New()
	all.AddRange(0, uint64(n))
	r.ingest(ctx, &batchView{byName: map[string][]int{}, now: e.now, profiled: all, profiles: e.profiles, names: e.users.names}, r.seq)
	if r.target != nil {
		r.swap()
		return
	}

	// A segment whose predicate failed, or that reads one, stays stale:
	// its membership is kept as it was, unjudged.
	now := e.clock.Now()
	e.mu.Lock()
	for _, s := range r.segs { // in dependency order
		f, failed := r.failed[s]
		stale := failed
		for _, ref := range s.refs {
			_, refFailed := r.failed[ref]
			stale = stale || refFailed || (ref.stale != nil && !ref.rebuilding)
		}
		if !stale {
			s.stale = nil
			continue
		}
		if !failed {
			r.failed[s] = rebuildFailure{}
		}
		e.rebuildFailed(s, f.err, f.seq, now)
	}
	e.mu.Unlock()

	changes := changeSet{}
	for _, s := range r.segs {
		if _, failed := r.failed[s]; failed {
			continue
		}
		if s.tree == nil {
			next := r.static[s]
			it := s.members.Iterator()
			for it.HasNext() {
				if u := it.Next(); !next.Contains(u) {
					changes.set(s, u, false)
				}
			}
			it = next.Iterator()
			for it.HasNext() {
				changes.set(s, it.Next(), true)
			}
			continue
		}
		for u := range uint32(n) {
			changes.set(s, u, s.tree.holds(u, e.now, changes))
		}
	}
	for _, l := range r.leaves {
		delete(e.paused, l)
	}
	e.rebuild = nil
	e.publish(changes, func(st *api.StatusReply) {
		for _, s := range r.segs {
			s.rebuilding = false
		}
		st.Rebuilding = nil
	})
	var stale []string
	for _, s := range r.segs {
		if _, failed := r.failed[s]; failed {
			stale = append(stale, s.seg.ID)
		}
	}
	e.logger.Info("segments rebuilt from the event log", "segments", r.Segments(), "to_seq", r.toSeq,
		"skipped_events", r.skipped, "still_stale", stale)
}

// keepLive records a message the live path applied while a rebuild runs.
// Writer only.
func (e *Engine) keepLive(msg *ingest.Message) {
	if e.rebuild != nil && msg.Err == nil && msg.Seq > e.rebuild.toSeq {
		e.rebuild.live = append(e.rebuild.live, msg)
	}
}

// Rebuilding reports whether a segment is being rebuilt.
func (e *Engine) Rebuilding(segment string) bool {
	s, ok := e.ids()[segment]
	if !ok {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return s.rebuilding
}
