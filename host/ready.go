package host

import (
	"context"
	"time"
)

// replayLogInterval is how often the replay's progress is logged while
// segd is not ready.
const replayLogInterval = 5 * time.Second

// logReplay logs, every replayLogInterval, how far the replay of the log
// (and the rebuild of new or changed rules) has come, and "segd is ready"
// once, when the status says ready: at once when there was nothing to
// replay (an empty stream, or a snapshot at its end).
func (s *Server) logReplay(ctx context.Context, to uint64) {
	start := time.Now()
	t := time.NewTicker(replayLogInterval)
	defer t.Stop()
	rebuilt := s.rebuildDone // nil without a rebuild: never ready
	for {
		// The whole status only once the replay is done: the waiter
		// changes with every message replayed.
		if !s.rebuilding() {
			if st := s.membership().Status(); st.Ready {
				s.cfg.Logger.Info("segd is ready: caught up with the event log", "seq", st.LastSeq,
					"from_seq", s.replayFrom, "took", time.Since(start).Round(time.Millisecond))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.segAPI.waiter.Changed():
		case <-rebuilt:
			rebuilt = nil
		case <-t.C:
			st := s.membership().Status()
			if st.LastSeq < to {
				s.cfg.Logger.Info("replaying the event log", "applied_seq", st.LastSeq, "to_seq", to)
			} else {
				for _, r := range st.Rebuilding {
					s.cfg.Logger.Info("rebuilding a segment from the event log", "segment", r.Segment, "seq", r.Seq, "to_seq", r.ToSeq)
				}
			}
		}
	}
}

// startDone reports whether segd has done the work of its start: applied
// the log as it was at start, and rebuilt the segments the snapshot held
// no state for (rules new or changed since, or stale in it). That is
// `ready`: from then on every answer segd gives is exact as of the log it
// has applied. A later rebuild (a rule changed at run time, a plugin's
// recovery) leaves ready as it is: the other segments are served exactly
// meanwhile, the rebuilding ones answer 503 and are listed in
// `rebuilding`, and taking the host out of service (a readiness probe)
// for a rule change would help no one. A start is a deploy: another host
// may serve until this one serves the rules it was started with.
func (s *Server) startDone() bool {
	return !s.rebuilding() && (s.rebuild == nil || s.rebuildEnded.Load())
}

// HistoryStart implements segment.history's HistoryStart (see
// engine.HistoryStart).
func (st segmentStore) HistoryStart(segment string) string { return st.s.engine.HistoryStart(segment) }
