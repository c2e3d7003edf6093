package engine

import (
	"sync/atomic"
	"time"
)

// workCounters count the writer's work, for metrics; the writer adds to
// them and any goroutine reads them (Work).
type workCounters struct {
	clockMoves  atomic.Uint64 // clock steps that moved windows
	clockJudged atomic.Uint64 // (segment, user) judgements the clock's moves caused
	clockNanos  atomic.Uint64 // time spent moving windows
	applyNanos  atomic.Uint64 // time spent applying messages
	applied     atomic.Uint64 // messages applied (batches, uploads, not-batches)
}

// WorkStats is the engine's work since start (see Engine.Work).
type WorkStats struct {
	// ClockMoves counts the clock steps that moved the windows;
	// ClockJudged the (segment, user) judgements they caused; ClockTime
	// their total time.
	ClockMoves  uint64
	ClockJudged uint64
	ClockTime   time.Duration
	// Applied counts messages applied, ApplyTime their total time.
	Applied   uint64
	ApplyTime time.Duration
	// Evaluations counts, per segment id, the users its rule judged.
	Evaluations map[string]uint64
}

// Work reports the engine's work counters. It is safe from any goroutine.
func (e *Engine) Work() WorkStats {
	w := WorkStats{
		ClockMoves:  e.work.clockMoves.Load(),
		ClockJudged: e.work.clockJudged.Load(),
		ClockTime:   time.Duration(e.work.clockNanos.Load()),
		Applied:     e.work.applied.Load(),
		ApplyTime:   time.Duration(e.work.applyNanos.Load()),
		Evaluations: make(map[string]uint64, len(e.segments)),
	}
	for _, s := range e.segments {
		w.Evaluations[s.seg.ID] = s.evaluations.Load()
	}
	return w
}

// evaluations sums the segments' judgements (writer only: cheap, one load
// per segment).
func (e *Engine) evaluations() uint64 {
	var n uint64
	for _, s := range e.segments {
		n += s.evaluations.Load()
	}
	return n
}
