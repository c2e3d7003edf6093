package engine

import (
	"math"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// A rebuild reads the log from the first message that can hold an event
// its segments' windows reach, not from the stream's first, when that is
// later. The engine keeps the latest event time it has accepted (within
// the retention and at most MaxFutureSkew ahead of its clock, as apply
// judges them) and, each time that moved an hour on, marks the sequence of
// the message it applies with it (arrivalIndex): the messages before a
// mark hold no accepted event later than the mark's time, so if that is
// before the windows' reach the rebuild can start at the mark. A log
// published in event-time order (a backfill) is cut as finely as one that
// arrived live. After a restore from a snapshot, what the messages before
// it held is not known: the first mark takes the clock plus the skew
// (every event accepted before was at most that, the clock never going
// back), so the rebuild reads from the stream's first until the windows
// have moved past it.
//
// The reach of a segment is the earliest start of its rules' windows (a
// did's or a sequence's; a sequence's later steps follow its first, which
// is in the window) at the clock of the rebuild's start (windows only
// move forward), and never before the retention, whose older events are
// dropped anyway. Profile conditions need no log (the rebuild judges the
// current profiles) nor do in_segment conditions (they read the served
// segment). A static segment's uploads have no time: it reads the whole
// log. A message's events refused live as too far ahead of the clock are
// not marked: a rebuild reading the whole log would judge them at its
// later clock, one starting at a mark does not, as the live path did not.

// arrivalStep is how far apart in event time marks are taken.
const arrivalStep = hourMs

// arrivalIndex holds marks in ascending sequence and time.
type arrivalIndex struct {
	started bool
	latest  int64 // the latest event time accepted so far, Unix ms
	marks   []arrivalMark
}

type arrivalMark struct {
	seq    uint64
	before int64 // no event accepted before seq is later, Unix ms
}

// noteArrival marks msg if the latest event time has moved arrivalStep
// since the last mark, then takes in its events; it forgets the marks no
// rebuild can use (those the retention has passed, but the last). Writer
// only, before apply judges msg.
func (e *Engine) noteArrival(msg *ingest.Message) {
	a := &e.arrivals
	if msg.Seq == 0 || msg.Err != nil {
		return
	}
	limit := e.now + e.skew.Milliseconds()
	if !a.started {
		a.started, a.latest = true, math.MinInt64
		if e.lastSeq > 0 { // restored: what came before is not known
			a.latest = limit
		}
	}
	if n := len(a.marks); n == 0 || a.latest >= a.marks[n-1].before+arrivalStep {
		a.marks = append(a.marks, arrivalMark{seq: msg.Seq, before: a.latest})
	}
	oldest := e.retentionStart()
	for i := range msg.Batch.Events {
		if t := msg.Batch.Events[i].Time; t > a.latest && t <= limit && t >= oldest {
			a.latest = t
		}
	}
	drop := 0
	for drop+1 < len(a.marks) && a.marks[drop+1].before < oldest {
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
		if m.before >= reach {
			break
		}
		from = m.seq
	}
	return from
}

// FromSeq is the first sequence of the log the rebuild needs (see
// replay_span.go); its RebuildSource may start there.
func (r *Rebuild) FromSeq() uint64 { return r.fromSeq }
