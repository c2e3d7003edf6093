package scatter_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/remotepart"
	"github.com/segd/segd/host/remotepart/remotetest"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// TestRemotePartitionsAnswerAsOne is TestFourPartitionsAnswerAsOne with
// each of the four partitions served by an owner host (remotepart.Serve
// behind a cluster.Router) and reached by another over a real NATS
// server (remotepart.New): every answer of the merged four still equals
// one engine's and the reference evaluators'.
func TestRemotePartitionsAnswerAsOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		zone string
		seed uint64
	}{{"America/New_York", 1}, {"UTC", 2}} {
		t.Run(fmt.Sprintf("%s/seed%d", tc.zone, tc.seed), func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(tc.zone)
			if err != nil {
				t.Fatal(err)
			}
			// Every user's memberships at every third step: about 3,300
			// requests each, which under -race on 2 shared cores took 10
			// minutes at every step.
			scatter.RunEquivalence(t, loc, tc.seed, 4, remote(remotetest.Options{}), 3)
		})
	}
}

// remote serves parts from an owner host and returns the caller's Parts.
func remote(opts remotetest.Options) func(testing.TB, []scatter.Part) []scatter.Part {
	return func(t testing.TB, parts []scatter.Part) []scatter.Part {
		return remotetest.Start(t, parts, opts).Remote
	}
}

// TestRemoteErrorsKeepTheirCode is TestAPartitionThatCannotAnswerMakesTheAnswerItsError
// and TestADeadlineStopsEveryPartition over NATS: a partition rebuilding
// on its owner makes the merged answers 503 naming it; an unknown segment
// is a 404, a request past a limit the 400 one engine gives, a deadline a
// context error.
func TestRemoteErrorsKeepTheirCode(t *testing.T) {
	t.Parallel()
	t.Run("cannot answer", func(t *testing.T) {
		t.Parallel()
		scatter.CannotAnswer(t, remote(remotetest.Options{}))
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		scatter.Deadline(t, remote(remotetest.Options{}))
	})
}

// TestRemoteRepliesPastMaxPayload is TestPageWalksAndSetsCrossBlocks
// (70,000 users a partition) over a server whose max payload is 8 KiB:
// pages of 10,000 ids (40 KB), their names and the partitions' bitmaps
// come back in chunks, and every answer is still whole.
func TestRemoteRepliesPastMaxPayload(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("210,000 users")
	}
	scatter.CrossBlocks(t, remote(remotetest.Options{MaxPayload: 8 << 10}))
}

// TestRemotePartitionWithoutOwner: partition 2 of 4 has no host serving
// it. Within the wait, every merged answer that needs it is a 503 naming
// it (never the other three's sum), the list shows every segment
// unavailable with size 0, status is not ready, and point requests about
// users of the other partitions are still answered.
func TestRemotePartitionWithoutOwner(t *testing.T) {
	t.Parallel()
	const n, orphan, seg = 4, 2, "checkout_3x_7d"
	const wait, attempt = 300 * time.Millisecond, 200 * time.Millisecond
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	s, apply := scatter.Cluster(t, n, clock, remote(remotetest.Options{Unowned: []int{orphan},
		Remote: remotepart.Options{Forward: cluster.ForwardOptions{MaxWait: wait, AttemptTimeout: attempt}}}))
	var evs []rules.Event
	for i := range 40 {
		for range 3 {
			evs = append(evs, rules.Event{User: fmt.Sprintf("u%d", i), Name: "checkout", Time: clock.Now().UnixMilli()})
		}
	}
	apply(&ingest.Message{Batch: rules.Batch{Events: evs}})

	want := fmt.Sprintf("partition %d of %d: ", orphan, n)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"count":  func() error { _, err := s.SegmentCount(seg); return err },
		"page":   func() error { _, _, err := s.SegmentPage(seg, 0, 10); return err },
		"detail": func() error { _, err := s.SegmentDetail(seg); return err },
		"funnel": func() error {
			_, err := s.AnalyzeFunnel(ctx, &api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "checkout"}}, Window: "1d"})
			return err
		},
		"member check": func() error { return s.MemberView(scatter.UserOf(t, orphan, n), []string{seg}).Err },
		"names": func() error {
			_, err := s.UserNames([]uint32{scatter.GlobalID(0, 0, n), scatter.GlobalID(0, orphan, n)})
			return err
		},
	} {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if scatter.CodeOf(err) != api.CodeUnavailable || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "no owner") {
			t.Errorf("%s: got %v (code %s), want a 503 beginning %q saying it has no owner", name, err, scatter.CodeOf(err), want)
		}
		if took > wait+attempt+time.Second {
			t.Errorf("%s: answered after %s, past the %s wait", name, took, wait)
		}
	}
	if v := s.MemberView(scatter.UserOf(t, 0, n), []string{seg}); v.Err != nil || len(v.Segments) != 1 || !v.Segments[0].Served || !v.Segments[0].Member {
		t.Errorf("a user of partition 0: %+v; want served, a member", v)
	}
	for _, info := range s.Segments() {
		if info.Status != api.SegmentUnavailable || info.Size != 0 || !strings.HasPrefix(info.Error, want) {
			t.Errorf("segment.list: %+v; want unavailable, size 0, naming partition %d", info, orphan)
		}
	}
	if got := s.UnavailableSegments(); !slices.Contains(got, seg) || len(got) < 10 {
		t.Errorf("unavailable segments %v; want every segment", got)
	}
	st := s.Status()
	if st.Ready || len(st.Partitions) != n || st.Partitions[orphan].Ready || !st.Partitions[0].Ready || !strings.HasPrefix(st.LastIngestError, want) {
		t.Errorf("status: ready %v, partitions %+v, last error %q; want not ready because of partition %d", st.Ready, st.Partitions, st.LastIngestError, orphan)
	}
}
