package scatter

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
)

var (
	_ bus.Membership   = (*Scatter)(nil)
	_ bus.SegmentStore = (*Scatter)(nil)
	_ bus.Analyzer     = (*Scatter)(nil)
)

// IsMember implements bus.Membership: the user's partition answers.
func (s *Scatter) IsMember(user, segment string) (bool, error) {
	ok, err := s.partOf(user).IsMember(user, segment)
	return ok, s.partErr(s.indexOf(user), err)
}

// MemberSince implements bus.Membership: the user's partition answers.
func (s *Scatter) MemberSince(user, segment string) (bool, time.Time, error) {
	ok, since, err := s.partOf(user).MemberSince(user, segment)
	return ok, since, s.partErr(s.indexOf(user), err)
}

// UserSegments implements bus.Membership: the user's partition answers.
func (s *Scatter) UserSegments(user string) []string { return s.partOf(user).UserSegments(user) }

// UserMemberships implements bus.Membership: the user's partition answers.
func (s *Scatter) UserMemberships(user string) []api.Membership {
	return s.partOf(user).UserMemberships(user)
}

// MemberView implements bus.Membership: the user's partition answers, so
// AsOf is that partition's point of the log.
func (s *Scatter) MemberView(user string, segments []string) bus.MemberView {
	return s.partOf(user).MemberView(user, segments)
}

// UserGet answers user.get from the user's partition.
func (s *Scatter) UserGet(ctx context.Context, r *api.UserGetRequest) (*api.UserGetReply, error) {
	rep, err := s.partOf(r.User).UserGet(ctx, r)
	return rep, s.partErr(s.indexOf(r.User), err)
}

// UnavailableSegments lists, in id order, the segments some partition does
// not serve now.
func (s *Scatter) UnavailableSegments() []string {
	var out []string
	for _, p := range s.parts {
		out = append(out, p.UnavailableSegments()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SegmentCount implements bus.Membership and bus.SegmentStore: the sum of
// the partitions' sizes, or the first partition's error.
func (s *Scatter) SegmentCount(segment string) (uint64, error) {
	counts := make([]uint64, len(s.parts))
	err := s.eachQuick(func(_ context.Context, i int, p Part) error {
		n, err := p.SegmentCount(segment)
		counts[i] = n
		return err
	})
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, n := range counts {
		sum += n
	}
	return sum, nil
}

// Segments implements bus.Membership: every partition's segments, merged
// by id (mergeInfo).
func (s *Scatter) Segments() []api.SegmentInfo {
	if len(s.parts) == 1 {
		return s.parts[0].Segments()
	}
	lists := make([][]api.SegmentInfo, len(s.parts))
	_ = s.eachQuick(func(_ context.Context, i int, p Part) error {
		lists[i] = p.Segments()
		return nil
	})
	// at[p][id] is the index of segment id in partition p's list.
	at := make([]map[string]int, len(lists))
	var ids []string
	seen := map[string]bool{}
	for p, list := range lists {
		at[p] = make(map[string]int, len(list))
		for j := range list {
			id := list[j].ID
			at[p][id] = j
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	out := make([]api.SegmentInfo, 0, len(ids))
	for _, id := range ids {
		infos := make([]*api.SegmentInfo, len(lists))
		for p, list := range lists {
			if j, ok := at[p][id]; ok {
				infos[p] = &list[j]
			}
		}
		out = append(out, mergeInfo(infos))
	}
	return out
}

// statusRank orders segment states from served to the worst: the merged
// state is the worst of the partitions'.
func statusRank(status string) int {
	switch status {
	case "active":
		return 0
	case "rebuilding":
		return 1
	case api.SegmentStale:
		return 2
	case api.SegmentFailed:
		return 3
	case api.SegmentUnavailable:
		return 4
	}
	return 5
}

// mergeInfo merges the partitions' descriptions of segment id. The size
// is the sum; the status is the worst partition's, whose error and
// progress are shown, naming it (a partition that cannot be reached is
// "unavailable", size 0); a partition that does not define the
// segment (a rule added while another partition has it already) makes it
// "rebuilding". A rebuilding segment's size is 0, as on one engine: the
// partitions' sizes would be a partial sum. Revision is the lowest
// partition's; while partitions serve different revisions, NextRevision
// names the highest.
func mergeInfo(infos []*api.SegmentInfo) api.SegmentInfo {
	var out api.SegmentInfo
	worst, maxRev := -1, uint64(0)
	missing := -1
	for p, in := range infos {
		if in == nil {
			if missing < 0 {
				missing = p
			}
			continue
		}
		if out.ID == "" {
			out = api.SegmentInfo{ID: in.ID, Kind: in.Kind, Description: in.Description, Status: "active", Revision: in.Revision}
		}
		out.Size += in.Size
		out.EvalErrors += in.EvalErrors
		if in.LastEvalError != "" {
			out.LastEvalError = in.LastEvalError
		}
		out.Revision = min(out.Revision, in.Revision)
		maxRev = max(maxRev, in.Revision)
		if out.NextRevision == nil && in.NextRevision != nil {
			nr := *in.NextRevision
			out.NextRevision = &nr
		}
		if r := statusRank(in.Status); r > worst {
			worst = r
			out.Status, out.Rebuild, out.Stale, out.Error = in.Status, in.Rebuild, in.Stale, ""
			if in.Error != "" {
				out.Error = fmt.Sprintf("partition %d of %d: %s", p, len(infos), in.Error)
			}
		}
	}
	if missing >= 0 && worst < statusRank("rebuilding") {
		out.Status = "rebuilding"
		out.Error = fmt.Sprintf("partition %d of %d does not define the segment yet", missing, len(infos))
	}
	if out.Status == "rebuilding" || out.Status == api.SegmentUnavailable {
		out.Size = 0
	}
	if out.NextRevision == nil && maxRev > out.Revision {
		out.NextRevision = &api.NextRevision{Revision: maxRev}
	}
	return out
}

// Status implements bus.Membership. With one partition it is that
// partition's. With more, Ready is true once every partition is ready;
// the counters are sums (a message every partition reads — a mixed batch,
// an upload, a message that is no batch — counts once per partition);
// LastSeq is the lowest partition's: every message of the stream up to it
// has been applied by every partition that reads it. Partitions lists each
// partition's own progress.
func (s *Scatter) Status() api.StatusReply {
	if len(s.parts) == 1 {
		return s.parts[0].Status()
	}
	sts := make([]api.StatusReply, len(s.parts))
	_ = s.eachQuick(func(_ context.Context, i int, p Part) error {
		sts[i] = p.Status()
		return nil
	})
	return mergeStatus(sts)
}

func mergeStatus(sts []api.StatusReply) api.StatusReply {
	out := api.StatusReply{Ready: true, Clock: sts[0].Clock, DeadLetterStream: sts[0].DeadLetterStream}
	name := func(p int, text string) string {
		if text == "" {
			return ""
		}
		return fmt.Sprintf("partition %d of %d: %s", p, len(sts), text)
	}
	first := func(dst *string, p int, text string) {
		if *dst == "" {
			*dst = name(p, text)
		}
	}
	rebuilding := map[string]int{} // segment → index in out.Rebuilding
	stale := map[string]bool{}
	plugins := map[string]int{}
	for p, st := range sts {
		out.Ready = out.Ready && st.Ready
		if p == 0 || st.LastSeq < out.LastSeq {
			out.LastSeq = st.LastSeq
		}
		if p == 0 || st.ReplayFrom < out.ReplayFrom {
			out.ReplayFrom = st.ReplayFrom
		}
		out.ReplayTo = max(out.ReplayTo, st.ReplayTo)
		out.Batches += st.Batches
		out.Events += st.Events
		out.Profiles += st.Profiles
		out.InvalidItems += st.InvalidItems
		first(&out.FirstInvalid, p, st.FirstInvalid)
		out.Uploads += st.Uploads
		out.RejectedUploads += st.RejectedUploads
		out.Expired += st.Expired
		out.TooNew += st.TooNew
		out.NotBatches += st.NotBatches
		first(&out.LastNotBatch, p, st.LastNotBatch)
		out.Users += st.Users
		out.DeadLetters += st.DeadLetters
		out.DeadLetterRecords += st.DeadLetterRecords
		out.IngestRetries += st.IngestRetries
		out.GaveUp += st.GaveUp
		out.LostToDLQ += st.LostToDLQ
		first(&out.FirstIngestError, p, st.FirstIngestError)
		if st.LastIngestError != "" {
			out.LastIngestError = name(p, st.LastIngestError)
		}
		out.RefusedItems += st.RefusedItems
		out.RefusedValues += st.RefusedValues
		first(&out.FirstRefused, p, st.FirstRefused)
		out.AnalysisDropped += st.AnalysisDropped
		first(&out.FirstAnalysisDropped, p, st.FirstAnalysisDropped)
		if out.DeadLetterStream == "" {
			out.DeadLetterStream = st.DeadLetterStream
		}
		// A segment rebuilt in several partitions shows the one furthest
		// behind.
		for _, r := range st.Rebuilding {
			if i, ok := rebuilding[r.Segment]; ok {
				have := &out.Rebuilding[i]
				have.Seq, have.ToSeq = min(have.Seq, r.Seq), max(have.ToSeq, r.ToSeq)
				continue
			}
			rebuilding[r.Segment] = len(out.Rebuilding)
			out.Rebuilding = append(out.Rebuilding, r)
		}
		for _, x := range st.Stale {
			if stale[x.Segment] {
				continue
			}
			stale[x.Segment] = true
			x.Error = name(p, x.Error)
			out.Stale = append(out.Stale, x)
		}
		for _, pl := range st.Plugins {
			i, ok := plugins[pl.Name]
			if !ok {
				plugins[pl.Name] = len(out.Plugins)
				pl.LastError = name(p, pl.LastError)
				out.Plugins = append(out.Plugins, pl)
				continue
			}
			have := &out.Plugins[i]
			have.Batches += pl.Batches
			have.Items += pl.Items
			have.Timeouts += pl.Timeouts
			have.Traps += pl.Traps
			have.Retries += pl.Retries
			have.Instances += pl.Instances
			if have.State == "ok" && pl.State != "ok" {
				have.State, have.LastError = pl.State, name(p, pl.LastError)
			}
		}
		if st.Feed != nil {
			if out.Feed == nil {
				out.Feed = &api.FeedStatus{}
			}
			f := out.Feed
			f.Published += st.Feed.Published
			f.Messages += st.Feed.Messages
			f.Backlog += st.Feed.Backlog
			f.BacklogBytes += st.Feed.BacklogBytes
			f.MaxBacklogBytes += st.Feed.MaxBacklogBytes
			f.Waits += st.Feed.Waits
			f.Failed += st.Feed.Failed
			f.Suppressed += st.Feed.Suppressed
			f.Unpublishable += st.Feed.Unpublishable
			if w := st.Feed.WaitingSince; w != "" && (f.WaitingSince == "" || w < f.WaitingSince) {
				f.WaitingSince = w // RFC 3339 in one zone: the earliest
			}
			if st.Feed.LastError != "" {
				f.LastError = name(p, st.Feed.LastError)
			}
		}
		out.Partitions = append(out.Partitions, api.PartitionStatus{Partition: p, Ready: st.Ready,
			LastSeq: st.LastSeq, ReplayFrom: st.ReplayFrom, ReplayTo: st.ReplayTo, Users: st.Users,
			Events: st.Events, Rebuilding: len(st.Rebuilding), Stale: len(st.Stale), Snapshot: st.Snapshot, Feed: st.Feed})
	}
	return out
}
