package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// apply applies one message: the clock first, then the batch (or upload).
func (e *Engine) apply(ctx context.Context, msg *ingest.Message) error {
	if msg.Seq != 0 && msg.Seq <= e.lastSeq {
		return nil // a redelivery: already applied
	}
	e.advanceClock(ctx)
	e.noteArrival(msg)
	if msg.Err != nil {
		e.logger.Warn("skipped a message that is not a batch", "seq", msg.Seq, "subject", msg.Subject, "error", msg.Err)
		e.lastSeq = max(e.lastSeq, msg.Seq)
		e.publish(nil, func(s *api.StatusReply) {
			s.NotBatches++
			s.LastNotBatch = fmt.Sprintf("seq %d on %s: %v", msg.Seq, msg.Subject, msg.Err)
			s.LastSeq = e.lastSeq
		})
		return nil
	}
	b := &msg.Batch
	changes := changeSet{}
	fresh := roaring.New() // users seen for the first time
	var uploaded, refused uint64
	if msg.Upload != nil {
		uploaded, refused = e.upload(msg, fresh, changes)
	}

	// Events are judged by their own time: too far ahead of the clock is a
	// producer bug (rejected), older than retention can never count
	// (dropped). Neither makes its user known.
	now := e.now
	limit := now + e.skew.Milliseconds()
	oldest := (dayOf(now, e.loc) - dayIndex(e.retention) + 1).Start(e.loc)
	var tooNew, expired uint64
	view := &batchView{byName: map[string][]int{}, now: now}
	view.events = make([]rules.Event, 0, len(b.Events)) // grown by append, a fifth of a step's bytes
	names := make([]string, 0, len(b.Events))
	for i := range b.Events {
		switch t := b.Events[i].Time; {
		case t > limit:
			tooNew++
		case t < oldest:
			expired++
		default:
			view.events = append(view.events, b.Events[i])
			names = append(names, b.Events[i].User)
		}
	}
	view.users = make([]uint32, len(names))
	if full := e.users.intern(names, view.users, func(id uint32) { fresh.Add(id) }); full != nil {
		e.refuseUsers(msg, names, full)
		refused += uint64(len(full))
		view.events = dropAt(view.events, full)
		view.users = dropAt(view.users, full)
	}
	for i := range view.events {
		if name := view.events[i].Name; e.route[name] {
			view.byName[name] = append(view.byName[name], i)
		}
	}
	names = names[:0]
	for i := range b.Profiles {
		names = append(names, b.Profiles[i].User)
	}
	profileUsers := make([]uint32, len(names))
	profileFull := e.users.intern(names, profileUsers, func(id uint32) { fresh.Add(id) })
	profilesRefused := len(profileFull)
	if profileFull != nil {
		e.refuseUsers(msg, names, profileFull)
		refused += uint64(len(profileFull))
	}

	// Profiles merge; nil removes an attribute. New users are judged too,
	// with no attributes.
	view.profiled = fresh.Clone()
	for i, up := range b.Profiles {
		if len(profileFull) > 0 && profileFull[0] == i {
			profileFull = profileFull[1:] // no id: refused
			continue
		}
		id := profileUsers[i]
		if err := e.profiles.merge(id, up.Attrs); err != nil {
			// Not a JSON value (the wire decoder makes none): the rest of
			// the update applies; the item counts as invalid.
			b.Invalid++
			if b.FirstInvalid == "" {
				b.FirstInvalid = fmt.Sprintf("profile of %q: %v", truncateText(up.User, 64), err)
			}
		}
		view.profiled.Add(id)
	}
	view.profiles, view.names = &batchProfiles{store: e.profiles}, e.users.names

	valuesBefore := e.limits.refusedValues
	touched := e.ingest(ctx, view, msg.Seq, msg.Subject)
	if e.limits.refusedValues != valuesBefore {
		e.logRefusals("distinct values", e.limits.refusedValues, "seq", msg.Seq, "subject", msg.Subject, "limit", e.limits.values)
	}
	e.evaluate(touched, fresh, changes)
	if e.observer != nil && len(view.events) > 0 {
		e.observer.ObserveEvents(view.events, view.users)
	}

	e.lastSeq = max(e.lastSeq, msg.Seq)
	e.keepLive(msg)
	e.publish(changes, func(s *api.StatusReply) {
		s.Uploads += uploaded
		s.Batches++
		s.Events += uint64(len(view.events))
		s.Profiles += uint64(len(b.Profiles) - profilesRefused)
		s.RefusedItems += refused
		s.RefusedValues = e.limits.refusedValues
		if s.FirstRefused == "" {
			s.FirstRefused = e.limits.first
		}
		s.TooNew += tooNew
		s.Expired += expired
		s.InvalidItems += uint64(b.Invalid)
		if b.FirstInvalid != "" && s.FirstInvalid == "" {
			s.FirstInvalid = fmt.Sprintf("seq %d on %s: %s", msg.Seq, msg.Subject, b.FirstInvalid)
		}
		s.LastSeq = e.lastSeq
	})
	return nil
}

// ingest hands the batch (stream sequence seq, on subject) to every leaf and returns
// the users each touched. A leaf whose predicate fails the batch makes its
// segment stale (recovery.go); the other leaves go on. A big batch is
// ingested on several goroutines: the leaves whose ingest touches only
// their own state (concurrentIngest) are shared out among them, the others
// go on this one, before it joins in.
func (e *Engine) ingest(ctx context.Context, view *batchView, seq uint64, subject string) map[leaf]*roaring.Bitmap {
	live := e.liveLeaves[:0]
	for _, l := range e.leaves {
		if !e.paused[l] { // rebuilding: fed by the rebuild, in log order
			live = append(live, l)
		}
	}
	e.liveLeaves = live
	ts := make([]*roaring.Bitmap, len(live))
	errs := make([]error, len(live))
	one := func(i int) {
		ts[i] = roaring.New()
		errs[i] = live[i].ingest(ctx, view, ts[i])
	}
	workers := min(runtime.GOMAXPROCS(0), maxEvalWorkers)
	if workers < 2 || len(live) < 2 || len(view.events)*len(live) < 4*e.parallelMin {
		for i := range live {
			one(i)
		}
	} else {
		var shared []int
		for i, l := range live {
			if concurrentIngest(l) {
				shared = append(shared, i)
			}
		}
		var next atomic.Int64
		work := func() {
			for k := int(next.Add(1) - 1); k < len(shared); k = int(next.Add(1) - 1) {
				one(shared[k])
			}
		}
		var wg sync.WaitGroup
		for range workers - 1 {
			wg.Go(work)
		}
		for i, l := range live {
			if !concurrentIngest(l) {
				one(i)
			}
		}
		work()
		wg.Wait()
	}
	touched := make(map[leaf]*roaring.Bitmap, len(live))
	for i, l := range live {
		touched[l] = ts[i]
		if errs[i] == nil {
			continue
		}
		for _, s := range e.segments {
			for _, sl := range s.leaves {
				if sl == l {
					e.markStale(s, errs[i], seq, subject)
				}
			}
		}
	}
	return touched
}

// concurrentIngest reports whether a leaf's ingest reads the batch and
// writes only the leaf's own state, so that it may run beside other such
// leaves' (predicates may be called from several goroutines at once).
// Distinct counts share the engine's value limits, and profile
// conditions the batch's profile cache: they are ingested one at a time.
func concurrentIngest(l leaf) bool {
	switch l := l.(type) {
	case *didLeaf:
		return l.cond.Aggregate.Func != rules.AggDistinct
	case *seqLeaf:
		return true
	}
	return false
}

// advanceClock moves every window to the clock. The users whose value may
// change with it (events leaving or entering a window, drop-off deadlines
// passing) are judged again: members leave and enter with no new event.
func (e *Engine) advanceClock(_ context.Context) {
	t1 := e.clock.Now().UnixMilli()
	if t1 <= e.now {
		e.publish(nil, func(*api.StatusReply) {})
		return
	}
	start := time.Now()
	defer func() { e.work.clockNanos.Add(uint64(time.Since(start))) }()
	t0 := e.now
	e.now = t1
	touched := make(map[leaf]*roaring.Bitmap, len(e.leaves))
	for _, l := range e.leaves {
		if e.paused[l] {
			continue // the rebuild moves them
		}
		t := roaring.New()
		l.advance(t0, t1, t)
		touched[l] = t
	}
	e.work.clockMoves.Add(1)
	before := e.evaluations()
	changes := changeSet{}
	e.evaluate(touched, nil, changes)
	e.work.clockJudged.Add(e.evaluations() - before)
	e.publish(changes, func(*api.StatusReply) {})
}

// evaluate judges again, segment by segment in dependency order, the users
// that the step touched: those of the segment's leaves and those whose
// membership of a segment it reads changed. New users (who join the
// universe that negations and zero counts are relative to) that nothing
// touched have empty state everywhere, so they take the segment's empty
// value without being judged one by one. When the step touched many users,
// the segments that read no other are judged on several goroutines first.
func (e *Engine) evaluate(touched map[leaf]*roaring.Bitmap, fresh *roaring.Bitmap, changes changeSet) {
	rest := e.order
	if workers := e.evalWorkers(touched); workers > 1 {
		rest = e.evaluateParallel(workers, touched, fresh, changes)
	}
	for _, s := range rest {
		if d := e.judge(s, touched, fresh, changes, &e.scratch); d != nil {
			changes[s] = d
		}
	}
}

// evalParallelMin is the fewest users a step's leaves must touch for
// evaluate to judge segments on several goroutines: below it the hand-off
// costs more than it saves.
const evalParallelMin = 1024

// maxEvalWorkers bounds the goroutines that judge a step's segments.
const maxEvalWorkers = 4

// evalWorkers is how many goroutines evaluate uses for a step.
func (e *Engine) evalWorkers(touched map[leaf]*roaring.Bitmap) int {
	workers := min(runtime.GOMAXPROCS(0), maxEvalWorkers)
	if workers < 2 || len(e.order) < 2 {
		return 1
	}
	n := uint64(0)
	for _, t := range touched {
		if n += t.GetCardinality(); n >= uint64(e.parallelMin) {
			return workers
		}
	}
	return 1
}

// evaluateParallel judges the segments that read no other segment on
// workers goroutines (this one and workers-1 more), each segment on one of
// them, and returns the others, in dependency order, to be judged after.
// A segment's judging touches only its own leaves' state and scratch, and
// the changes of this step are read but not written until all are done.
func (e *Engine) evaluateParallel(workers int, touched map[leaf]*roaring.Bitmap, fresh *roaring.Bitmap, changes changeSet) []*segmentState {
	free, rest := e.evalFree[:0], e.evalRest[:0]
	for _, s := range e.order {
		if len(s.refs) == 0 {
			free = append(free, s)
		} else {
			rest = append(rest, s)
		}
	}
	e.evalFree, e.evalRest = free, rest
	deltas := make([]*membershipDelta, len(free))
	for len(e.helpers) < workers-1 {
		e.helpers = append(e.helpers, &evalScratch{})
	}
	var next atomic.Int64
	work := func(sc *evalScratch) {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(free) {
				return
			}
			deltas[i] = e.judge(free[i], touched, fresh, changes, sc)
		}
	}
	var wg sync.WaitGroup
	for _, sc := range e.helpers[:workers-1] {
		wg.Go(func() { work(sc) })
	}
	work(&e.scratch)
	wg.Wait()
	for i, s := range free {
		if deltas[i] != nil {
			changes[s] = deltas[i]
		}
	}
	return rest
}

// judge judges segment s's users the step touched and returns its delta:
// changes[s] with the step's changes added (nil if none). It reads changes
// (the segments s reads) and writes only s's leaves and sc.
func (e *Engine) judge(s *segmentState, touched map[leaf]*roaring.Bitmap, fresh *roaring.Bitmap, changes changeSet, sc *evalScratch) *membershipDelta {
	d := changes[s]
	if s.tree == nil || s.rebuilding || s.stale != nil {
		// static: uploads only; rebuilding: judged when done; stale:
		// its state misses events, so its membership stays as it was
		// until a rebuild judges it again.
		return d
	}
	if sc.affected == nil {
		sc.affected = roaring.New()
	}
	affected := sc.affected
	affected.Clear()
	for _, l := range s.leaves {
		if t := touched[l]; t != nil {
			affected.Or(t)
		}
	}
	for _, r := range s.refs {
		if rd := changes[r]; rd != nil {
			affected.AddMany(rd.enter)
			affected.AddMany(rd.exit)
		}
	}
	if !affected.IsEmpty() {
		// No user, no judging: a leaf's pass over its buckets costs even
		// for none (a tenth of a 100-rule catch-up went to clock moves
		// that touched nobody).
		s.evaluations.Add(affected.GetCardinality())
		// All the users at once: a leaf walks its columns once for them.
		us := sc.users(affected)
		out := sc.outs(len(us))
		s.tree.holdsMany(us, affected, e.now, changes, out)
		d = d.setMany(s, us, out)
	}
	if fresh != nil && s.empty && !fresh.IsEmpty() {
		d = d.enterAll(s, roaring.AndNot(fresh, affected))
	}
	return d
}

// evalScratch are evaluate's buffers, reused from step to step (writer
// only): a 100-rule step made three of them per segment.
type evalScratch struct {
	affected *roaring.Bitmap
	us       []uint32
	out      []bool
}

// users returns the content of set in us's buffer.
func (sc *evalScratch) users(set *roaring.Bitmap) []uint32 {
	n := int(set.GetCardinality())
	sc.us = slices.Grow(sc.us[:0], n)[:n]
	it := set.ManyIterator()
	it.NextMany(sc.us)
	return sc.us
}

// outs returns n cleared results.
func (sc *evalScratch) outs(n int) []bool {
	sc.out = slices.Grow(sc.out[:0], n)[:n]
	clear(sc.out)
	return sc.out
}

// upload applies a static segment upload; it returns 1 when applied. An
// upload for a segment that is not static is logged and counted, not
// retried: the service checks before publishing, so only a rule change
// between publishing and applying gets here.
func (e *Engine) upload(msg *ingest.Message, fresh *roaring.Bitmap, changes changeSet) (applied, refused uint64) {
	up := msg.Upload
	// Ids the decoder refused count as invalid items, like a batch's.
	if up.Invalid > 0 {
		if msg.Batch.FirstInvalid == "" {
			msg.Batch.FirstInvalid = up.FirstInvalid
		}
		msg.Batch.Invalid += up.Invalid
	}
	s, ok := e.ids()[up.Segment]
	if !ok || !s.seg.Static {
		e.logger.Warn("ignored an upload for a segment that is not static", "seq", msg.Seq, "subject", msg.Subject, "segment", up.Segment)
		e.publish(nil, func(st *api.StatusReply) { st.RejectedUploads++ })
		return 0, 0
	}
	ids := make([]uint32, len(up.Users))
	if full := e.users.intern(up.Users, ids, func(id uint32) { fresh.Add(id) }); full != nil {
		e.refuseUsers(msg, up.Users, full)
		refused = uint64(len(full))
		ids = dropAt(ids, full)
	}
	if s.rebuilding {
		return 1, refused // the rebuild applies it, in log order
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
	return 1, refused
}

// refuseUsers records that the users of names at positions full got no id.
func (e *Engine) refuseUsers(msg *ingest.Message, names []string, full []int) {
	if e.limits.first == "" {
		e.limits.first = fmt.Sprintf("seq %d on %s: the user id space is full (%d users): a new user (%q) was refused",
			msg.Seq, msg.Subject, e.users.limit, truncateText(names[full[0]], 64))
	}
	e.limits.refusedUsers += uint64(len(full))
	e.logRefusals("users", e.limits.refusedUsers, "seq", msg.Seq, "subject", msg.Subject, "limit", e.users.limit)
}

// dropAt returns s without the elements at the ascending positions pos,
// reusing its array.
func dropAt[T any](s []T, pos []int) []T {
	out := s[:pos[0]]
	for k, p := range pos {
		end := len(s)
		if k+1 < len(pos) {
			end = pos[k+1]
		}
		out = append(out, s[p+1:end]...)
	}
	return out
}
