package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// A segment is stale when one of its predicates (a plugin) could not judge
// a batch: the batch is applied to every other rule and acked, so that one
// plugin cannot stop ingest, but this segment's state misses its events.
// Its membership then stays as it was (no change is computed or published
// from state known to be incomplete), is not served (ErrStale, a 503), and
// the segments that read it are stale too.
//
// A stale segment recovers by a rebuild from the retained log (rebuild.go),
// started by StartRecovery once a plugin the rule names may judge again
// (PluginUsable: a later batch succeeded, or a new version was loaded). A
// rebuild that fails again (a batch the plugin can never judge) counts;
// the next waits for another sign of recovery and a back-off that doubles
// each time; after Config.MaxRecoveryRebuilds failed rebuilds the segment
// is "failed" and only a new version of the plugin (or a restart) tries
// again. Snapshots keep the mark: a restart rebuilds the segment from the
// log before serving it.

// ErrStale is returned by membership queries about a stale or failed
// segment; it is a 503 on the service.
var ErrStale = errors.New("segment is stale: a predicate could not judge a batch, so its membership misses events")

// Defaults of Config.MaxRecoveryRebuilds and Config.RecoveryBackoff.
const (
	DefaultMaxRecoveryRebuilds = 4
	DefaultRecoveryBackoff     = time.Minute
)

// staleState is why a segment is stale and how its recovery goes. Written
// by the writer under mu.
type staleState struct {
	reason string
	seq    uint64 // the first batch missed; 0 if unknown (from a snapshot)
	// dependent: stale only because a segment it reads is; it is rebuilt
	// along with that segment.
	dependent bool
	// usable: a rebuild may succeed now (a plugin the rule names judged a
	// batch or got a new version since the last attempt).
	usable bool
	// rebuilds counts rebuilds that failed again; retryAt is the earliest
	// next one; newVersion records a new version loaded during a rebuild.
	rebuilds   int
	retryAt    time.Time
	newVersion bool
}

// SegmentPlugins lists the plugins a segment's rule names itself (not
// those of the segments it reads), sorted: the predicates that report a
// PluginName, as package plugins' do.
func SegmentPlugins(seg *rules.Segment) []string {
	var out []string
	add := func(pred any) {
		if p, ok := pred.(interface{ PluginName() string }); ok && !slices.Contains(out, p.PluginName()) {
			out = append(out, p.PluginName())
		}
	}
	for pred := range rules.Predicates(seg.Condition) {
		add(pred)
	}
	slices.Sort(out)
	return out
}

// markStale records that a segment's predicate failed a batch (seq; 0 for
// a clock step or the final judging of a rebuild), and makes the segments
// that read it stale too. Writer only.
func (e *Engine) markStale(s *segmentState, err error, seq uint64, subject string) {
	msg := err.Error()
	if s.stale == nil || s.stale.reason != msg {
		e.logger.Error("segment predicate failed a batch; the segment is stale until rebuilt from the log",
			"segment", s.seg.ID, "seq", seq, "subject", subject, "error", msg)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.stale == nil {
		s.stale = &staleState{seq: seq}
	}
	s.stale.reason, s.stale.dependent = msg, false
	e.propagateStale()
}

// propagateStale makes every segment that reads a stale one stale. Writer,
// under mu.
func (e *Engine) propagateStale() {
	for _, d := range e.order { // references first
		if d.stale != nil {
			continue
		}
		for _, r := range d.refs {
			if r.stale != nil {
				d.stale = &staleState{reason: fmt.Sprintf("reads segment %q, which is stale", r.seg.ID),
					seq: r.stale.seq, dependent: true}
				break
			}
		}
	}
}

// PluginUsable notes that plugin name may judge batches again: a batch
// succeeded after one failed (newVersion false) or a new version was
// loaded (newVersion true, which also forgets failed rebuilds). The stale
// segments that name it become due for StartRecovery. Writer only (inside
// Do): the plugin registry reports this from inside a batch, so the caller
// queues it.
func (e *Engine) PluginUsable(name string, newVersion bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.segments {
		if s.stale == nil || s.stale.dependent || !slices.Contains(s.plugins, name) {
			continue
		}
		s.stale.usable = true
		if newVersion {
			s.stale.rebuilds, s.stale.retryAt = 0, time.Time{}
			s.stale.newVersion = s.rebuilding
		}
	}
}

// StartRecovery starts a rebuild of the stale segments that are due (a
// plugin they name is usable again, the back-off has passed, and failed
// rebuilds are under the limit); run it like any Rebuild. It returns nil
// when none is due or a rebuild is already running, with next the
// earliest time one will be due for the back-off alone (zero if none).
// Writer only (inside Do).
func (e *Engine) StartRecovery() (rb *Rebuild, next time.Time, err error) {
	if e.rebuild != nil {
		return nil, time.Time{}, nil
	}
	now := e.clock.Now()
	var due []string
	for _, s := range e.segments {
		st := s.stale
		if st == nil || st.dependent || !st.usable || st.rebuilds >= e.maxRebuilds {
			continue
		}
		if now.Before(st.retryAt) {
			if next.IsZero() || st.retryAt.Before(next) {
				next = st.retryAt
			}
			continue
		}
		due = append(due, s.seg.ID)
	}
	if len(due) == 0 {
		return nil, next, nil
	}
	rb, err = e.StartRebuild(due)
	if err != nil {
		return nil, time.Time{}, err
	}
	e.logger.Info("rebuilding stale segments from the log", "segments", rb.Segments(), "to_seq", rb.toSeq)
	return rb, time.Time{}, nil
}

// rebuildFailed records that a rebuild left a segment stale: its own
// predicate failed again (err, at seq), or a segment it reads did
// (err nil). Writer, under mu.
func (e *Engine) rebuildFailed(s *segmentState, err error, seq uint64, now time.Time) {
	if s.stale == nil {
		s.stale = &staleState{seq: seq}
	}
	st := s.stale
	if err != nil {
		st.reason, st.dependent = err.Error(), false
	} else {
		for _, r := range s.refs {
			if r.stale != nil {
				st.reason, st.dependent = fmt.Sprintf("reads segment %q, which is stale", r.seg.ID), true
				break
			}
		}
	}
	if st.dependent {
		return // follows the segment it reads
	}
	if st.newVersion { // a new version came during the rebuild: try it
		st.newVersion, st.usable, st.rebuilds, st.retryAt = false, true, 0, time.Time{}
		return
	}
	st.rebuilds++
	st.retryAt = now.Add(e.backoff << (st.rebuilds - 1))
}

// Abort ends a rebuild that cannot finish (reading the log failed): its
// segments go back to stale, to be rebuilt again after the back-off; the
// engine can start another rebuild. Writer only (inside Do).
func (r *Rebuild) Abort(cause error) {
	e := r.e
	for _, l := range r.leaves {
		delete(e.paused, l) // stale: fed live, replaced by the next rebuild
	}
	e.rebuild = nil
	now := e.clock.Now()
	e.mu.Lock()
	for _, s := range r.segs {
		s.rebuilding = false
		e.rebuildFailed(s, fmt.Errorf("rebuild from the log failed: %w", cause), 0, now)
		s.stale.usable = true // not the plugin's doing: retry after the back-off
	}
	e.stats.Rebuilding = nil
	e.mu.Unlock()
	e.logger.Error("rebuild from the log failed; the segments stay stale and are retried", "segments", r.Segments(), "error", cause)
}

// served reports whether a segment's membership is served. Under mu
// (read).
func (s *segmentState) served() bool { return !s.rebuilding && s.stale == nil }

// servable reports why a segment's membership is not served, if it is
// not. Under mu (read).
func (e *Engine) servable(s *segmentState) error {
	if s.rebuilding {
		return errRebuilding(s.seg.ID)
	}
	if s.stale != nil {
		return &ingest.Error{Code: api.CodeUnavailable, Err: fmt.Errorf("%w: segment %q is %s: %s; not served until rebuilt from the event log (segment.list says how)",
			ErrStale, s.seg.ID, e.staleWord(s), s.stale.reason)}
	}
	return nil
}

// staleWord is a stale segment's status word. Under mu.
func (e *Engine) staleWord(s *segmentState) string {
	if s.rebuilding {
		return "rebuilding"
	}
	if !s.stale.dependent && s.stale.rebuilds >= e.maxRebuilds {
		return api.SegmentFailed
	}
	return api.SegmentStale
}

// staleStatus describes a stale segment. Under mu.
func (e *Engine) staleStatus(s *segmentState) *api.StaleStatus {
	st := s.stale
	out := &api.StaleStatus{Segment: s.seg.ID, State: e.staleWord(s), Error: st.reason, Seq: st.seq,
		Plugins: s.plugins, Rebuilds: st.rebuilds, MaxRebuilds: e.maxRebuilds}
	switch {
	case s.rebuilding:
		out.Waiting = "the rebuild from the log running now"
	case st.dependent:
		out.Waiting = "the segment it reads to recover"
	case st.rebuilds >= e.maxRebuilds:
		out.Waiting = fmt.Sprintf("a new version of plugin %v (or a restart): %d rebuilds from the log failed", s.plugins, st.rebuilds)
	case !st.usable:
		out.Waiting = fmt.Sprintf("plugin %v to judge a batch again, or a new version", s.plugins)
	default:
		out.Waiting = "a rebuild from the log"
	}
	if !st.dependent && st.rebuilds < e.maxRebuilds && !st.retryAt.IsZero() && e.clock.Now().Before(st.retryAt) {
		out.NextRebuild = st.retryAt.In(e.loc).Format(time.RFC3339)
		if st.usable {
			out.Waiting = "the back-off after a failed rebuild"
		}
	}
	return out
}
