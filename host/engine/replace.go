package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// Definitions change while the engine runs (the rules admin API): a new or
// changed segment is a replacement, a Rebuild whose one segment is hidden
// from readers. The hidden segment gets fresh leaves, fed from the log
// beside live ingest like any rebuild's; meanwhile a changed segment keeps
// serving its previous definition's exact membership (its next revision
// shows in Segments), and a new one is served as rebuilding (503) from a
// placeholder. When the log is fed, the swap, in one writer step, judges
// every user by the new definition, moves the definition, leaves and tree
// into the served segment (whose pointer the segments reading it keep),
// re-judges those readers, and publishes the difference: the change feed
// announces the entries and exits between the two revisions, once.

// ErrRebuildRunning is returned when a rebuild is asked for while another
// runs; the engine runs one at a time, so the caller tries again once it
// has ended.
var ErrRebuildRunning = errors.New("a rebuild is already running")

// errDiscarded ends the Run of a replacement that Discard dropped.
var errDiscarded = errors.New("the rebuild was discarded: a newer revision or a delete superseded it")

// ids is the index of segments by id. Any goroutine.
func (e *Engine) ids() map[string]*segmentState { return *e.byID.Load() }

// StartReplace starts rebuilding seg, a new or changed definition of
// revision rev, compiled beside the running ones (rules.CompileSet: the
// segments it reads exist, no cycle). Run it like any Rebuild; a Discard
// drops it. Writer only (inside Do).
func (e *Engine) StartReplace(seg *rules.Segment, rev uint64) (*Rebuild, error) {
	if e.rebuild != nil {
		return nil, ErrRebuildRunning
	}
	ids := e.ids()
	h := &segmentState{seg: seg, membership: membership{members: roaring.New()}, plugins: SegmentPlugins(seg)}
	for _, ref := range seg.References {
		rs, ok := ids[ref]
		if !ok || ref == seg.ID {
			return nil, fmt.Errorf("segment %q reads segment %q, which is not defined", seg.ID, ref)
		}
		h.refs = append(h.refs, rs)
	}
	target, ok := ids[seg.ID]
	if !ok {
		// A new segment: served as rebuilding until the swap.
		target = &segmentState{seg: seg, membership: membership{members: roaring.New()}, plugins: h.plugins,
			refs: h.refs, rebuilding: true}
		e.addSegment(target)
	}
	if e.paused == nil {
		e.paused = map[leaf]bool{}
	}
	e.buildLeaves(h)
	if seg.Condition != nil {
		h.tree = e.buildTree(seg.Condition)
		h.empty = h.tree.empty()
	}
	r := &Rebuild{e: e, toSeq: e.lastSeq, now: e.now, static: map[*segmentState]*roaring.Bitmap{}, chunk: rebuildChunk,
		failed: map[*segmentState]rebuildFailure{}, segs: []*segmentState{h}, target: target}
	for _, l := range h.leaves {
		e.paused[l] = true
		r.leaves = append(r.leaves, l)
	}
	if h.tree == nil {
		r.static[h] = roaring.New()
	}
	r.fromSeq = e.replayFrom(r.segs)
	e.rebuild = r
	e.mu.Lock()
	target.next, target.nextSeg = rev, seg
	e.stats.Rebuilding = r.progress()
	e.mu.Unlock()
	return r, nil
}

// AddPending makes a new segment known at once, before its rebuild can
// start (another may be running): it answers 503 "rebuilding" until
// StartReplace and the swap; a no-op for a segment already known. Writer
// only (inside Do).
func (e *Engine) AddPending(seg *rules.Segment, rev uint64) {
	if _, ok := e.ids()[seg.ID]; ok {
		return
	}
	s := &segmentState{seg: seg, membership: membership{members: roaring.New()}, plugins: SegmentPlugins(seg), rebuilding: true, next: rev}
	for _, ref := range seg.References {
		if rs, ok := e.ids()[ref]; ok {
			s.refs = append(s.refs, rs)
		}
	}
	e.addSegment(s)
}

// addSegment makes s known to readers. Writer only.
func (e *Engine) addSegment(s *segmentState) {
	next := make(map[string]*segmentState, len(e.ids())+1)
	for k, v := range e.ids() {
		next[k] = v
	}
	next[s.seg.ID] = s
	segs := append(slices.Clone(e.segments), s)
	sort.Slice(segs, func(i, j int) bool { return segs[i].seg.ID < segs[j].seg.ID })
	e.mu.Lock()
	e.segments = segs
	e.byID.Store(&next)
	e.mu.Unlock()
	e.order = dependencyOrder(e.segments)
}

// Target is the id of the segment a replacement rebuilds ("" for other
// rebuilds).
func (r *Rebuild) Target() string {
	if r.target == nil {
		return ""
	}
	return r.target.seg.ID
}

// staticSegment is the rebuilt static segment an upload names, if any.
func (r *Rebuild) staticSegment(id string) *segmentState {
	for _, s := range r.segs {
		if s.seg.ID == id {
			return s
		}
	}
	return nil
}

// swap ends a replacement: the finish of Run, once the log and the live
// messages are fed. Writer only.
func (r *Rebuild) swap() {
	e, h, t := r.e, r.segs[0], r.target
	n := e.users.size()
	changes := changeSet{}
	f, failed := r.failed[h]
	if !failed {
		if h.tree == nil {
			next := r.static[h]
			it := t.members.Iterator()
			for it.HasNext() {
				if u := it.Next(); !next.Contains(u) {
					changes.set(t, u, false)
				}
			}
			it = next.Iterator()
			for it.HasNext() {
				changes.set(t, it.Next(), true)
			}
		} else {
			for u := range uint32(n) {
				changes.set(t, u, h.tree.holds(u, e.now, changes))
			}
		}
	}
	old := map[leaf]bool{}
	for _, l := range t.leaves {
		old[l] = true
	}
	e.leaves = removeLeaves(e.leaves, old)
	for _, l := range r.leaves {
		delete(e.paused, l)
	}
	e.rebuild = nil
	now := e.clock.Now()
	e.mu.Lock()
	t.seg, t.leaves, t.tree, t.empty, t.refs, t.plugins = h.seg, h.leaves, h.tree, h.empty, h.refs, h.plugins
	t.revision, t.next, t.nextSeg, t.rebuilding = t.next, 0, nil, false
	if failed {
		// Its predicate failed a batch of the log: the new definition is
		// in place but stale, with the membership it had (recovery.go).
		e.rebuildFailed(t, f.err, f.seq, now)
	} else {
		t.stale = nil
	}
	e.mu.Unlock()
	e.order = dependencyOrder(e.segments)
	e.computeFingerprints(e.extra)
	// The segments that read it see its changes, as after a live step.
	none := make(map[leaf]*roaring.Bitmap, len(e.leaves))
	for _, l := range e.leaves {
		none[l] = roaring.New()
	}
	e.evaluate(none, nil, changes)
	e.publish(changes, func(st *api.StatusReply) { st.Rebuilding = nil })
	e.logger.Info("segment definition replaced", "segment", t.seg.ID, "revision", t.revision, "to_seq", r.toSeq,
		"enters", len(deltaOf(changes, t).enter), "exits", len(deltaOf(changes, t).exit), "failed", failed)
}

func deltaOf(c changeSet, s *segmentState) *membershipDelta {
	if d := c[s]; d != nil {
		return d
	}
	return &membershipDelta{}
}

// Discard drops a replacement that will not finish (superseded by a newer
// revision, or the log could not be read): the served segment stays as
// it was (a new segment's placeholder stays rebuilding, for the next
// revision or RemoveSegment). A no-op once the rebuild has ended. Writer
// only (inside Do).
func (r *Rebuild) Discard() {
	e := r.e
	if e.rebuild != r {
		return
	}
	drop := map[leaf]bool{}
	for _, l := range r.leaves {
		drop[l] = true
		delete(e.paused, l)
	}
	e.leaves = removeLeaves(e.leaves, drop)
	e.rebuild = nil
	e.mu.Lock()
	if r.target != nil {
		r.target.next, r.target.nextSeg = 0, nil
	}
	e.stats.Rebuilding = nil
	e.mu.Unlock()
}

// ReadersOf lists, sorted, the segments whose rules read segment id.
// Writer only.
func (e *Engine) ReadersOf(id string) []string {
	var out []string
	for _, s := range e.segments {
		if s.seg.ID != id && slices.Contains(s.seg.References, id) {
			out = append(out, s.seg.ID)
		}
	}
	if r := e.rebuild; r != nil && r.target != nil && r.target.seg.ID != id && slices.Contains(r.segs[0].seg.References, id) {
		out = append(out, r.target.seg.ID)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// RemoveSegment removes a segment while the engine runs: every member
// exits (the change feed announces it), then readers no longer find it.
// It is refused while another segment reads it, naming those, and while a
// rebuild involves it (ErrRebuildRunning: try again). Writer only.
func (e *Engine) RemoveSegment(id string) error {
	t, ok := e.ids()[id]
	if !ok {
		return errNotFound(id)
	}
	if readers := e.ReadersOf(id); len(readers) > 0 {
		return &ingest.Error{Code: api.CodeConflict, Err: fmt.Errorf("segment %q is read by %s: change or delete those first", id, strings.Join(quoteAll(readers), ", "))}
	}
	if r := e.rebuild; r != nil {
		if r.target == t {
			r.Discard()
		} else if slices.Contains(r.segs, t) {
			return ErrRebuildRunning
		}
	}
	changes := changeSet{}
	it := t.members.Iterator()
	for it.HasNext() {
		changes.set(t, it.Next(), false)
	}
	e.publish(changes, func(*api.StatusReply) {})
	drop := map[leaf]bool{}
	for _, l := range t.leaves {
		drop[l] = true
	}
	e.leaves = removeLeaves(e.leaves, drop)
	next := make(map[string]*segmentState, len(e.ids()))
	for k, v := range e.ids() {
		if k != id {
			next[k] = v
		}
	}
	segs := slices.DeleteFunc(slices.Clone(e.segments), func(s *segmentState) bool { return s == t })
	e.mu.Lock()
	e.segments = segs
	e.byID.Store(&next)
	e.mu.Unlock()
	e.order = dependencyOrder(e.segments)
	e.logger.Info("segment removed", "segment", id, "exits", t.members.GetCardinality())
	return nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// revisionInfo adds the served and rebuilding revisions to a segment's
// info. Under mu (read).
func (e *Engine) revisionInfo(s *segmentState, info *api.SegmentInfo) {
	info.Revision = s.revision
	info.Plugins = pluginVersions(s.seg)
	if s.nextSeg == nil && s.next == 0 {
		return
	}
	info.NextRevision = &api.NextRevision{Revision: s.next}
	if s.nextSeg != nil {
		info.NextRevision.Plugins = pluginVersions(s.nextSeg)
	}
	for _, p := range e.stats.Rebuilding {
		if p.Segment == s.seg.ID {
			info.NextRevision.Rebuild = &api.RebuildStatus{Segment: p.Segment, Seq: p.Seq, ToSeq: p.ToSeq}
		}
	}
}

// pluginVersions maps each plugin a segment's rule names to the version
// that judges its predicates (those that say, as package plugins' do).
func pluginVersions(seg *rules.Segment) map[string]string {
	var out map[string]string
	add := func(pred any) {
		if p, ok := pred.(interface {
			PluginName() string
			PluginVersion() string
		}); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[p.PluginName()] = p.PluginVersion()
		}
	}
	for pred := range rules.Predicates(seg.Condition) {
		add(pred)
	}
	return out
}
