package host

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// The rule applier: it hands queued rule changes to every partition's
// engine, rebuilds the changed segments from the log beside live ingest,
// and settles what no longer runs (rules_admin.go queues the changes).

// run hands queued changes to the engine, one at a time, after the
// rebuild at start.
func (a *ruleAdmin) run(ctx context.Context) {
	defer close(a.done)
	if err := a.s.WaitRebuilt(ctx); ctx.Err() != nil {
		return
	} else if err != nil {
		a.s.cfg.Logger.Warn("the rebuild at start failed; applying rule changes anyway", "error", err)
	}
	for {
		a.mu.Lock()
		var c ruleChange
		ok := len(a.queue) > 0
		if ok {
			c, a.queue = a.queue[0], a.queue[1:]
		}
		a.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
				continue
			}
		}
		if !a.applyAll(ctx, &c) {
			a.settle(c.id)
		} else if ctx.Err() == nil {
			a.requeue(c)
			select {
			case <-ctx.Done():
				return
			case <-time.After(engineBusy):
			}
		}
	}
}

// settle tells the plugins admin that a segment's change has run, unless
// a newer one of it is queued: a plugin's previous version may be
// released once every segment naming it has swapped.
func (a *ruleAdmin) settle(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.s.pluginAdmin == nil || slices.ContainsFunc(a.queue, func(q ruleChange) bool { return q.id == id }) {
		return
	}
	a.s.pluginAdmin.settled(id)
}

// requeue puts back a change that could not run now, unless a newer one
// of the segment is queued.
func (a *ruleAdmin) requeue(c ruleChange) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.ContainsFunc(a.queue, func(q ruleChange) bool { return q.id == c.id }) {
		a.queue = append([]ruleChange{c}, a.queue...)
	}
}

// applyOutcome is what one partition made of a rule change.
type applyOutcome int

const (
	// applyRetry: try again (the engine's rebuild slot is taken, or the
	// log could not be read).
	applyRetry applyOutcome = iota
	// applyDone: swapped in, removed, or nothing to rebuild.
	applyDone
	// applyDropped: refused, or superseded by a newer revision; the new
	// definition never ran here.
	applyDropped
)

// partApplied is one partition's outcome of a rule change: old is the
// definition it replaced, res its rebuild when one ran.
type partApplied struct {
	outcome applyOutcome
	old     *rules.Segment
	res     *engine.RebuildResult
	took    time.Duration
}

// applyAll runs one change in every partition it has still to run in (at
// the same time: each rebuilds from its own share of the log). It reports
// whether some must try again, leaving those in c.parts; once none must,
// it settles the change (finish). A newer revision cancels them all
// (enqueue).
func (a *ruleAdmin) applyAll(ctx context.Context, c *ruleChange) (retry bool) {
	parts := c.parts
	if parts == nil {
		parts = a.s.partitions()
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.running, a.cancel = c.id, cancel
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running, a.cancel = "", nil
		a.mu.Unlock()
	}()
	results := make([]partApplied, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { results[i] = a.apply(ctx, rctx, p, c) })
	}
	wg.Wait()
	c.parts = nil
	for i, p := range parts {
		if results[i].outcome == applyRetry {
			c.parts = append(c.parts, p)
		} else {
			c.applied = append(c.applied, results[i])
		}
	}
	if len(c.parts) > 0 {
		return true
	}
	if ctx.Err() == nil {
		a.finish(c)
	}
	return false
}

// finish settles a change every partition has run: the plugin predicates
// of what no longer runs anywhere are released (the definitions it
// replaced, and the new one if no partition took it), and the rebuild is
// recorded for rule.get (summed over the partitions).
func (a *ruleAdmin) finish(c *ruleChange) {
	var dropped int
	olds := map[*rules.Segment]bool{}
	sum := api.RebuildSummary{Revision: c.rev}
	var rebuilt, removed bool
	for _, r := range c.applied {
		switch r.outcome {
		case applyDropped:
			dropped++
		case applyDone:
			if r.old != nil && r.old != c.seg {
				olds[r.old] = true
			}
			if r.res == nil {
				removed = true
				continue
			}
			if !rebuilt || r.res.FromSeq < sum.FromSeq {
				sum.FromSeq = r.res.FromSeq
			}
			rebuilt = true
			sum.ToSeq = max(sum.ToSeq, r.res.ToSeq)
			sum.Messages += r.res.Messages
			sum.Events += r.res.Events
			sum.Live += r.res.Live
			sum.TookMS = max(sum.TookMS, r.took.Milliseconds())
		}
	}
	if dropped > 0 && dropped < len(c.applied) {
		// Some partitions run the new definition and some an older one
		// (a refusal in one partition, or a newer revision superseding
		// the rebuild where it had not swapped yet): each stays open
		// while a partition runs it.
		a.s.cfg.Logger.Warn("a rule change ran in some partitions only; the definitions they run stay open",
			"segment", c.id, "revision", c.rev, "dropped_in", dropped, "of", len(c.applied))
	}
	// A definition is released once no partition runs it: one replaced
	// here may have run elsewhere until now (the old definition a partial
	// change left in some partitions is replaced there later, by another
	// change), and so may the new one.
	if c.seg != nil {
		olds[c.seg] = true
	}
	for _, p := range a.s.partitions() {
		if seg, _, err := p.engine.Segment(c.id); err == nil {
			delete(olds, seg)
		}
	}
	for def := range olds {
		closePredicates(def)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case rebuilt:
		if a.rebuilt == nil {
			a.rebuilt = map[string]api.RebuildSummary{}
		}
		a.rebuilt[c.id] = sum
	case removed:
		delete(a.rebuilt, c.id)
	}
}

// apply runs one change in partition p (the Server itself with one).
// rctx ends when a newer revision supersedes it.
func (a *ruleAdmin) apply(ctx, rctx context.Context, p *Server, c *ruleChange) partApplied {
	// A partition that stops meanwhile (moved to another host) ends the
	// change here as done: its next owner starts with the definitions
	// current then.
	outer := ctx
	ctx, cancel := p.boundCtx(ctx)
	defer cancel()
	rctx, rcancel := p.boundCtx(rctx)
	defer rcancel()
	gone := func() bool { return outer.Err() != nil || p.stopped() }
	e := p.engine
	var rb *engine.Rebuild
	// old is the definition the change replaces: once it no longer runs,
	// its plugin predicates are released (finish).
	var old *rules.Segment
	err := e.Do(ctx, func() error {
		old, _, _ = e.Segment(c.id)
		if c.seg == nil {
			return e.RemoveSegment(c.id)
		}
		var err error
		rb, err = e.StartReplace(c.seg, c.rev)
		return err
	})
	switch {
	case gone():
		return partApplied{outcome: applyDone}
	case errors.Is(err, engine.ErrRebuildRunning):
		return partApplied{outcome: applyRetry}
	case errors.Is(err, bus.ErrNotFound) && c.seg == nil:
		return partApplied{outcome: applyDone} // never ran (deleted while queued)
	case err != nil:
		p.cfg.Logger.Error("applying a rule change", "segment", c.id, "revision", c.rev, "error", err)
		return partApplied{outcome: applyDropped}
	case rb == nil:
		return partApplied{outcome: applyDone, old: old} // removed
	}
	defer p.wakeRecovery()
	start := time.Now()
	res, err := func() (engine.RebuildResult, error) {
		src, err := p.readLog(rctx, rb.FromSeq(), rb.ToSeq())
		if err != nil {
			return engine.RebuildResult{}, err
		}
		defer src.Close()
		if gate := a.s.cfg.ruleRebuildGate; gate != nil {
			return rb.Run(rctx, gatedSource{src, gate})
		}
		if hold := a.s.cfg.ruleRebuildHold; hold != nil {
			if gate := hold(p.part.n, c.id, c.rev); gate != nil {
				return rb.Run(rctx, gatedSource{src, gate})
			}
		}
		return rb.Run(rctx, src)
	}()
	if err == nil {
		took := time.Since(start)
		p.cfg.Logger.Info("segment definition rebuilt from the event log and swapped in", "segment", c.id, "revision", c.rev,
			"from_seq", res.FromSeq, "to_seq", res.ToSeq, "messages", res.Messages, "live_messages", res.Live, "took", took.Round(time.Millisecond))
		return partApplied{outcome: applyDone, old: old, res: &res, took: took}
	}
	if gone() {
		return partApplied{outcome: applyDone}
	}
	// Superseded (rctx cancelled) or the log failed: drop it; a no-op if
	// the swap happened after all.
	if derr := e.Do(ctx, func() error { rb.Discard(); return nil }); derr != nil {
		return partApplied{outcome: applyDone}
	}
	if rctx.Err() != nil {
		p.cfg.Logger.Info("a newer revision superseded the rebuild of a segment definition", "segment", c.id, "revision", c.rev)
		return partApplied{outcome: applyDropped}
	}
	p.cfg.Logger.Error("rebuilding a segment definition from the event log failed; trying again", "segment", c.id, "revision", c.rev, "error", err)
	return partApplied{outcome: applyRetry}
}

// wakeRecovery tells the stale segments' recovery loop that the rebuild
// slot is free.
func (s *Server) wakeRecovery() {
	if s.recovery == nil {
		return
	}
	select {
	case s.recovery.wake <- struct{}{}:
	default:
	}
}

// gatedSource holds every read until gate is closed (tests: a rebuild
// that is seen in progress).
type gatedSource struct {
	engine.RebuildSource
	gate <-chan struct{}
}

func (g gatedSource) Next(ctx context.Context) (*bus.IngestMessage, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.RebuildSource.Next(ctx)
}
