package host

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/rules"
)

// wireAnalysis gives the analysis index the engine's events. It keeps the
// days of the events stream's retention.
func (s *Server) wireAnalysis(cfg *engine.Config) {
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock.Now
	}
	ix := analysis.New(analysis.Config{Location: cfg.Location, Days: s.retentionDays(), Now: now, Logger: s.cfg.Logger})
	cfg.Observer = ix
	if len(s.predicates) > 0 {
		cfg.Observer = &predicateObserver{next: ix, predicates: s.predicates, logger: s.cfg.Logger}
	}
	s.analysis = ix
}

// predicateObserver records, beside every event, the events that match
// each named predicate as events named "@ID", so that the index serves
// named predicates exactly as it serves event names.
type predicateObserver struct {
	next       engine.EventObserver
	predicates []*rules.NamedPredicate
	logger     *slog.Logger
	scratch    []rules.Event
}

// ObserveEvents implements engine.EventObserver.
func (o *predicateObserver) ObserveEvents(events []rules.Event, users []uint32) {
	o.next.ObserveEvents(events, users)
	for _, p := range o.predicates {
		var pos []int
		for i := range events {
			if slices.Contains(p.Events, events[i].Name) {
				pos = append(pos, i)
			}
		}
		if len(pos) == 0 {
			continue
		}
		bits := rules.NewBits(len(pos))
		if p.Where == nil {
			for k := range pos {
				bits.Set(k)
			}
		} else {
			o.scratch = o.scratch[:0]
			for _, i := range pos {
				o.scratch = append(o.scratch, events[i])
			}
			if err := p.Where.MatchEvents(context.Background(), o.scratch, bits); err != nil {
				o.logger.Error("named predicate failed a batch; analysis of it misses these events", "predicate", p.ID, "error", err)
				continue
			}
		}
		var matched []rules.Event
		var ids []uint32
		for k, i := range pos {
			if bits.Has(k) {
				ev := events[i]
				ev.Name = "@" + p.ID
				matched = append(matched, ev)
				ids = append(ids, users[i])
			}
		}
		if len(matched) > 0 {
			o.next.ObserveEvents(matched, ids)
		}
	}
}

// AnalysisIndex returns the server's analysis index (with several
// partitions, the first partition's).
func (s *Server) AnalysisIndex() *analysis.Index {
	if ps := s.partitions(); len(ps) > 0 {
		return ps[0].analysis
	}
	return nil
}

// analysisEndpoints are the segd.v1.analysis.* endpoints: the merge of
// the partitions, or with one the partition itself (scatter.Local answers
// both ways, so a host of one partition and one of many share the logic).
func (s *Server) analysisEndpoints() []bus.Endpoint {
	if s.scatter != nil {
		return bus.AnalysisEndpoints(s.scatter)
	}
	return bus.AnalysisEndpoints(s.localPart())
}

// localPart is the server's one partition as host/scatter answers for a
// partition in this process: analyses and user.get.
func (s *Server) localPart() *scatter.Local {
	var ids []string
	for _, p := range s.predicates {
		ids = append(ids, p.ID)
	}
	return scatter.NewLocal(scatter.LocalConfig{Engine: s.engine, Index: s.analysis, Predicates: ids,
		Replaying: s.rebuilding, Status: s.completeStatus})
}
