package host

import (
	"context"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// segmentAPI is the host side of the segment API: the change feed, the
// applied-sequence waiter behind segment.upload, and replay progress.
type segmentAPI struct {
	feed   *bus.ChangeFeed
	waiter bus.SeqWaiter
	// replayTo is the events stream's last sequence at start (of the
	// messages this partition reads): until it is applied, segments are
	// "rebuilding".
	replayTo uint64
	// changes is SEGD_CHANGES; streamEnd the events stream's last
	// sequence at start.
	changes   jetstream.Stream
	streamEnd uint64
	// events is SEGD_EVENTS.
	events jetstream.Stream
}

// wireChanges creates the change feed stream SEGD_CHANGES and connects the
// engine's membership changes to it before the engine starts.
//
// A restart replays the event log and regenerates changes. Changes caused
// by events at or below the sequence recorded on the feed's last message
// were published by the earlier run and are not published again (those
// at exactly that sequence are, and JetStream drops the duplicates by
// Nats-Msg-Id); changes from later events are published. A new feed starts
// at the events stream's end: current members are not announced.
func (s *Server) wireChanges(ctx context.Context, cfg *engine.Config) error {
	s.segAPI = &segmentAPI{}
	events, err := s.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	info, err := events.Info(ctx)
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	s.segAPI.replayTo = info.State.LastSeq
	if s.part.of > 1 {
		// A partition is caught up at the last message it reads, which
		// may lie before the stream's last.
		if s.segAPI.replayTo, err = bus.LastPartitionSeq(ctx, events, s.part.n, s.part.of); err != nil {
			return fmt.Errorf("events stream: %w", err)
		}
	}
	changes, err := ensureRetry(ctx, s.cfg.Logger, api.ChangesStream, func(ctx context.Context) (jetstream.Stream, error) {
		return bus.EnsureChangesStream(ctx, s.js, bus.ChangesStreamConfig{Replicas: s.cfg.Replicas})
	})
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	s.segAPI.changes, s.segAPI.streamEnd, s.segAPI.events = changes, info.State.LastSeq, events
	if s.part.of < 2 {
		resume, err := bus.FeedResumePoint(ctx, changes, info.State.LastSeq+1)
		if err != nil {
			return fmt.Errorf("change feed: %w", err)
		}
		s.segAPI.feed = bus.StartChangeFeed(s.js, bus.ChangeFeedOptions{ResumeAfter: resume, Logger: s.cfg.Logger, MaxBacklog: s.cfg.FeedBacklog})
		s.cfg.Logger.Info("change feed", "stream", api.ChangesStream, "resume_after_seq", resume)
	} // a partition's starts once its snapshot is loaded: startPartitionFeed
	cfg.OnChanges = func(cs []engine.Change) {
		if len(cs) == 0 {
			return
		}
		// On the writer goroutine: the last applied sequence is the batch
		// that caused these changes (or the one before a clock tick). Add
		// may wait for JetStream when the backlog is full: ingest then
		// goes at the pace the feed is stored (backpressure), bounded at
		// shutdown by closingGrace.
		seq := s.engine.Status().LastSeq
		s.segAPI.feed.Add(seq, cs[0].Time, len(cs), func(i int) bus.FeedChange {
			return bus.FeedChange{Segment: cs[i].Segment, User: cs[i].User, Enter: cs[i].Enter}
		})
	}
	return nil
}

// startPartitionFeed starts a partition's change feed publisher, once its
// snapshot is loaded: it resumes after the partition's last message in
// SEGD_CHANGES (bus.FeedResumePointOf), or, if none is recent, republishes
// from its replay's start (JetStream drops what was stored, by
// Nats-Msg-Id). A no-op for a single partition, whose feed wireChanges
// started.
func (s *Server) startPartitionFeed(ctx context.Context) error {
	if s.part.of < 2 {
		return nil
	}
	info, err := s.segAPI.changes.Info(ctx)
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	resume, err := bus.FeedResumePointOf(ctx, s.segAPI.changes, s.part.name(), s.segAPI.streamEnd+1, s.replayFrom, info.Config.Duplicates)
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	s.segAPI.feed = bus.StartChangeFeed(s.js, bus.ChangeFeedOptions{ResumeAfter: resume, Logger: s.cfg.Logger, MaxBacklog: s.cfg.FeedBacklog,
		Partition: s.part.name(), PublishLock: &s.front.feedLock, OtherHosts: s.front.multi != nil})
	s.cfg.Logger.Info("change feed", "stream", api.ChangesStream, "resume_after_seq", resume)
	return nil
}

// feedGrace bounds how long stopping waits for the change feed: ingest
// waiting for room in the backlog, the shutdown snapshot waiting for the
// changes it covers to be stored, and the final flush. What is not stored
// by then is published by the next start, which replays its events.
const feedGrace = 5 * time.Second

// closingChanges starts the feed's grace; call it first when stopping.
func (s *Server) closingChanges() {
	if s.segAPI != nil && s.segAPI.feed != nil {
		s.segAPI.feed.Closing(feedGrace)
	}
}

// closeChanges publishes the queued changes and stops the feed; call it
// after the engine has stopped.
func (s *Server) closeChanges() {
	if s.segAPI != nil && s.segAPI.feed != nil {
		s.segAPI.feed.Close(feedGrace)
	}
}

// feedCovers waits until the changes of events up to seq are stored in
// SEGD_CHANGES; a snapshot at seq is written only then, since a start from
// it replays nothing before seq and could not publish them again.
func (s *Server) feedCovers(ctx context.Context, seq uint64) error {
	if s.segAPI == nil || s.segAPI.feed == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, feedCoverTimeout)
	defer cancel()
	return s.segAPI.feed.WaitCovered(ctx, seq)
}

// feedCoverTimeout bounds a snapshot's wait for the feed; past it the
// snapshot is not written (counted as a failure, with the reason).
const feedCoverTimeout = time.Minute

// ingester is what the consumer feeds: the engine, noting each applied
// sequence for segment.upload.
func (s *Server) ingester() bus.Ingester { return appliedIngester{s.engine, &s.segAPI.waiter} }

// ChangeFeed returns the change feed publisher, for its counters (with
// several partitions, the first partition's).
func (s *Server) ChangeFeed() *bus.ChangeFeed {
	if ps := s.partitions(); len(ps) > 0 {
		return ps[0].segAPI.feed
	}
	return nil
}

type appliedIngester struct {
	e *engine.Engine
	w *bus.SeqWaiter
}

func (a appliedIngester) Apply(ctx context.Context, msg *bus.IngestMessage) error {
	if err := a.e.Apply(ctx, msg); err != nil {
		return err
	}
	a.w.Applied(msg.Seq)
	return nil
}

// segmentEndpoints are the segment API endpoints beyond membership.
func (s *Server) segmentEndpoints() []bus.Endpoint {
	if s.scatter != nil {
		return bus.SegmentEndpoints(s.scatter, bus.SegmentOptions{JetStream: s.js, WaitApplied: s.WaitApplied})
	}
	return bus.SegmentEndpoints(segmentStore{s}, bus.SegmentOptions{JetStream: s.js, WaitApplied: s.segAPI.waiter.Wait})
}

// membership is what the service answers membership from: the engine, with
// segments shown as rebuilding until the replay at start has caught up.
func (s *Server) membership() bus.Membership {
	if s.scatter != nil {
		if s.cfg.HostID != "" {
			return hostMembership{s.scatter, s.cfg.HostID, s.Owned}
		}
		return s.scatter
	}
	return replayMembership{s.engine, s}
}

// hostMembership names the host in the merged status (ownership.go).
type hostMembership struct {
	bus.Membership
	host  string
	owned func() []int // the partitions this host runs (multihost.go)
}

func (m hostMembership) Status() api.StatusReply {
	st := m.Membership.Status()
	st.Host = m.host
	st.OwnedPartitions = m.owned()
	return st
}

// TryMemberView implements bus.QuickMembership when the merged membership
// does.
func (m hostMembership) TryMemberView(user string, segments []string) (bus.MemberView, bool) {
	if q, ok := m.Membership.(bus.QuickMembership); ok {
		return q.TryMemberView(user, segments)
	}
	return bus.MemberView{}, false
}

type replayMembership struct {
	*engine.Engine
	s *Server
}

// Status adds readiness, replay progress, snapshots and dead letters to
// the engine's counters: segd is ready once it has applied the stream as it
// was at start.
func (m replayMembership) Status() api.StatusReply { return m.s.completeStatus(m.Engine.Status()) }

// completeStatus adds to the engine's status what the host knows. The
// dead letters and plugins, which the partitions share, are the first
// partition's to report.
func (s *Server) completeStatus(st api.StatusReply) api.StatusReply {
	st.Ready = st.Ready && s.startDone()
	st.ReplayFrom, st.ReplayTo = s.replayFrom, s.segAPI.replayTo
	st.Host = s.cfg.HostID
	if s.snaps != nil {
		st.Snapshot = s.snaps.statusCopy()
	}
	shared := s.part.n == 0
	if s.dlq != nil && shared {
		st.DeadLetterStream, st.DeadLetters = s.dlq.Stream(), s.dlq.Count()
	}
	s.addIngestStatus(&st)
	if s.segAPI.feed != nil {
		st.Feed = s.segAPI.feed.Status()
	}
	if s.plugins != nil && shared {
		for _, p := range s.plugins.Statuses() {
			st.Plugins = append(st.Plugins, api.PluginStatus{
				Name: p.Name, Version: p.Version, ABI: p.ABI, State: string(p.State), LastError: p.LastError,
				Interrupt: p.Interrupt, Batches: p.Batches, Items: p.Items, Timeouts: p.Timeouts,
				Traps: p.Traps, Retries: p.Retries, Instances: p.Instances,
			})
		}
	}
	return st
}

func (m replayMembership) Segments() []api.SegmentInfo {
	list := m.Engine.Segments()
	if m.s.rebuilding() {
		for i := range list {
			if list[i].Status == "active" {
				list[i].Status = "rebuilding"
			}
		}
	}
	return list
}

// MemberView marks the segments served while segd replays its log after a
// start as replaying: their membership is that of the log so far, not the
// log's end, so it is not exact.
func (m replayMembership) MemberView(user string, segments []string) bus.MemberView {
	return m.replaying(m.Engine.MemberView(user, segments))
}

// TryMemberView implements bus.QuickMembership like MemberView (the
// engine's, promoted, would not mark replaying answers).
func (m replayMembership) TryMemberView(user string, segments []string) (bus.MemberView, bool) {
	v, ok := m.Engine.TryMemberView(user, segments)
	return m.replaying(v), ok
}

// replaying marks v's exact answers replaying if v is of the log before
// the replay's end.
func (m replayMembership) replaying(v bus.MemberView) bus.MemberView {
	if v.AsOf.Seq < m.s.segAPI.replayTo {
		for i := range v.Segments {
			if v.Segments[i].State == api.StateExact {
				v.Segments[i].State = api.StateReplaying
			}
		}
	}
	return v
}

// rebuilding reports whether the replay at start is still running.
func (s *Server) rebuilding() bool { return s.segAPI.waiter.Last() < s.segAPI.replayTo }

// segmentStore adapts the engine to bus.SegmentStore.
type segmentStore struct{ s *Server }

func (st segmentStore) SegmentDetail(segment string) (api.SegmentGetReply, error) {
	e := st.s.engine
	def, info, err := e.Segment(segment)
	if err != nil {
		return api.SegmentGetReply{}, err
	}
	if info.Status == "active" && st.s.rebuilding() {
		info.Status = "rebuilding"
	}
	rep := api.SegmentGetReply{SegmentInfo: info, Definition: def.Source}
	if updated, err := e.SegmentUpdated(segment); err == nil && !updated.IsZero() {
		rep.Updated = updated.In(e.Location()).Format(time.RFC3339)
	}
	return rep, nil
}

func (st segmentStore) SegmentStatic(segment string) (bool, error) {
	def, _, err := st.s.engine.Segment(segment)
	if err != nil {
		return false, err
	}
	return def.Kind() == rules.KindStatic, nil
}

func (st segmentStore) SegmentPage(segment string, from uint32, limit int) ([]uint32, bool, error) {
	return st.s.engine.SegmentPage(segment, from, limit)
}

func (st segmentStore) SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error) {
	return st.s.engine.SegmentBitmaps(segments)
}

func (st segmentStore) UserNames(ids []uint32) ([]string, error) {
	return st.s.engine.UserNames(ids), nil
}

func (st segmentStore) History(segment string, from, to time.Time) ([]api.HistoryDay, error) {
	days, err := st.s.engine.History(segment, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]api.HistoryDay, len(days))
	for i, d := range days {
		out[i] = api.HistoryDay{Day: d.Day, Size: d.Size, Entered: d.Entered, Left: d.Left}
	}
	return out, nil
}

func (st segmentStore) SegmentCount(segment string) (uint64, error) {
	return st.s.engine.SegmentCount(segment)
}

func (st segmentStore) Location() *time.Location { return st.s.engine.Location() }
func (st segmentStore) Now() time.Time           { return st.s.engine.Now() }
