package engine

import (
	"sync/atomic"
	"time"
)

// workCounters count the writer's work, for metrics; the writer adds to
// them and any goroutine reads them (Work).
type workCounters struct {
	clockMoves atomic.Uint64 // clock steps that moved windows
	clockUsers atomic.Uint64 // users judged again because the clock moved
	clockNanos atomic.Uint64 // time spent moving windows
	applyNanos atomic.Uint64 // time spent applying messages
	applied    atomic.Uint64 // messages applied (batches, uploads, not-batches)
}

// WorkStats is the engine's work since start (see Engine.Work).
type WorkStats struct {
	// ClockMoves counts the clock steps that moved the windows;
	// ClockUsers the users they judged again; ClockTime their total time.
	ClockMoves uint64
	ClockUsers uint64
	ClockTime  time.Duration
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
		ClockUsers:  e.work.clockUsers.Load(),
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
