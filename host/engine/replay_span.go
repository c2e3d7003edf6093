package engine

import (
	"github.com/segd/segd/rules"
)

// A rebuild reads the log from the first message that can hold an event
// its segments' windows reach, not from the stream's first, when that is
// later. Events are judged by their own time, and the live path accepts
// only events at most MaxFutureSkew ahead of its clock when it applies
// them: so every event of a message applied at clock t is at most
// t+skew. The engine notes, about once an hour of its clock, the sequence
// of the message it applies and the clock then (arrivalIndex); since the
// clock never goes back, the messages before such a mark hold only events
// at most its clock+skew, and if that is before the windows' reach the
// rebuild can start at the mark.
//
// The reach of a segment is the earliest start of its rules' windows (a
// did's or a sequence's; a sequence's later steps follow its first, which
// is in the window) at the clock of the rebuild's start (windows only
// move forward), and never before the retention, whose older events are
// dropped anyway. Profile conditions need no log (the rebuild judges the
// current profiles) nor do in_segment conditions (they read the served
// segment). A static segment's uploads have no time: it reads the whole
// log. After a restart the marks start again at the first message
// applied (replayed messages are applied at the clock of the replay, so
// the marks stay true, and the rebuild reads the log from its first until
// time has passed).

// arrivalStep is how far apart, on the engine's clock, marks are taken.
const arrivalStep = hourMs

// arrivalIndex holds marks in ascending sequence and clock.
type arrivalIndex struct {
	marks []arrivalMark
}

type arrivalMark struct {
	seq uint64
	at  int64 // the engine's clock when seq was applied, Unix ms
}

// noteArrival records seq, applied at the engine's clock, if the last
// mark is an arrivalStep old, and forgets the marks no rebuild can use
// (those the retention has passed, but the last). Writer only.
func (e *Engine) noteArrival(seq uint64) {
	a := &e.arrivals
	if seq == 0 {
		return
	}
	if n := len(a.marks); n > 0 && e.now < a.marks[n-1].at+arrivalStep {
		return
	}
	a.marks = append(a.marks, arrivalMark{seq: seq, at: e.now})
	oldest := e.retentionStart()
	drop := 0
	for drop+1 < len(a.marks) && a.marks[drop+1].at+e.skew.Milliseconds() < oldest {
		drop++
	}
	if drop > 0 {
		a.marks = append(a.marks[:0], a.marks[drop:]...)
	}
}

// retentionStart is the start of the oldest day whose events count.
func (e *Engine) retentionStart() int64 {
	return (dayOf(e.now, e.loc) - dayIndex(e.retention) + 1).Start(e.loc)
}

// replayFrom is the first sequence a rebuild of segs must read: 1 (the
// stream's first) unless a mark shows that the messages before a later
// one hold no event the segments reach. Writer only.
func (e *Engine) replayFrom(segs []*segmentState) uint64 {
	reach := e.now
	for _, s := range segs {
		if s.seg.Condition == nil {
			return 1 // static: its uploads have no time
		}
		rules.Walk(s.seg.Condition, func(c rules.Condition) {
			var w rules.Window
			switch c := c.(type) {
			case *rules.Did:
				w = c.Window
			case *rules.Sequence:
				w = c.Window
			default:
				return
			}
			start, _ := w.Interval(e.now, e.loc)
			reach = min(reach, start)
		})
	}
	reach = max(reach, e.retentionStart())
	from := uint64(1)
	for _, m := range e.arrivals.marks {
		if m.at+e.skew.Milliseconds() >= reach {
			break
		}
		from = m.seq
	}
	return from
}

// FromSeq is the first sequence of the log the rebuild needs (see
// replay_span.go); its RebuildSource may start there.
func (r *Rebuild) FromSeq() uint64 { return r.fromSeq }
