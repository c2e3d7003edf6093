package scatter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
	"github.com/segd/segd/setexpr"
)

// codeOf is the reply code the service derives from an error (bus's
// errorDetail): an *ingest.Error's own, 404 for ErrNotFound, 503 for a
// deadline, 500 otherwise.
func codeOf(err error) string {
	var ce *ingest.Error
	switch {
	case errors.As(err, &ce) && ce.Code != "":
		return ce.Code
	case errors.Is(err, ingest.ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return api.CodeUnavailable
	}
	return api.CodeInternal
}

// userOf returns a test user of partition p of n.
func userOf(t *testing.T, p, n int) string {
	t.Helper()
	for i := range 1000 {
		if u := fmt.Sprintf("u%d", i); ingest.Partition(u, n) == p {
			return u
		}
	}
	t.Fatalf("no user of partition %d", p)
	return ""
}

// TestAPartitionThatCannotAnswerMakesTheAnswerItsError rebuilds a segment
// in one partition of four (a real engine's rebuild, left running): every
// aggregate over the segment is that partition's 503, naming it, never
// the other three's sum; point requests about the users of the other
// partitions are still answered; an unknown segment is a 404.
func TestAPartitionThatCannotAnswerMakesTheAnswerItsError(t *testing.T) {
	t.Parallel()
	testCannotAnswer(t, nil)
}

// testCannotAnswer is TestAPartitionThatCannotAnswerMakesTheAnswerItsError
// with the partitions reached through wrap.
func testCannotAnswer(t *testing.T, wrap wrapParts) {
	const n, sick, seg = 4, 2, "checkout_3x_7d"
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	c := newClusterWith(t, n, time.UTC, clock, wrap)
	var evs []rules.Event
	for i := range 40 {
		for range 3 {
			evs = append(evs, rules.Event{User: fmt.Sprintf("u%d", i), Name: "checkout", Time: clock.Now().UnixMilli()})
		}
	}
	c.apply(t, &ingest.Message{Batch: rules.Batch{Events: evs}})
	if got, err := c.s.SegmentCount(seg); err != nil || got != 40 {
		t.Fatalf("before the rebuild: count %d, %v; want 40", got, err)
	}
	e := c.engines[sick]
	if err := e.Do(context.Background(), func() error { _, err := e.StartRebuild([]string{seg}); return err }); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	want := fmt.Sprintf("partition %d of %d: ", sick, n)
	q, _ := setexpr.Parse("!" + seg)
	for name, call := range map[string]func() error{
		"count": func() error { _, err := c.s.SegmentCount(seg); return err },
		"page":  func() error { _, _, err := c.s.SegmentPage(seg, 0, 10); return err },
		"page past the partition": func() error {
			_, _, err := c.s.SegmentPage(seg, GlobalID(0, n-1, n), 10)
			return err
		},
		"bitmaps": func() error { _, _, err := c.s.SegmentBitmaps([]string{"young_men", seg}); return err },
		"query":   func() error { _, err := c.s.SegmentQuery(ctx, q); return err },
		"history": func() error { _, err := c.s.History(seg, clock.Now(), clock.Now()); return err },
		"events": func() error {
			_, err := c.s.AnalyzeEvents(ctx, &api.AnalysisEventsRequest{Events: []string{"checkout"}, Measures: []string{"uniques"}, Segments: []string{seg}})
			return err
		},
		"funnel": func() error {
			_, err := c.s.AnalyzeFunnel(ctx, &api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "checkout"}}, Window: "1d", Segments: []string{seg}})
			return err
		},
		"retention": func() error {
			_, err := c.s.AnalyzeRetention(ctx, &api.AnalysisRetentionRequest{StartEvent: "checkout", ReturnEvent: "checkout", Days: 3, Mode: api.RetentionFirstTime, Segments: []string{seg}})
			return err
		},
		"trend": func() error {
			_, err := c.s.AnalyzeTrend(ctx, &api.AnalysisTrendRequest{Segments: []string{seg}})
			return err
		},
		"point request in the partition": func() error { _, err := c.s.IsMember(userOf(t, sick, n), seg); return err },
	} {
		err := call()
		if codeOf(err) != api.CodeUnavailable || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "rebuilt") {
			t.Errorf("%s: got %v (code %s), want a 503 beginning %q", name, err, codeOf(err), want)
		}
	}
	if in, err := c.s.IsMember(userOf(t, 0, n), seg); err != nil || !in {
		t.Errorf("a user of partition 0: member %v, %v; want true, nil", in, err)
	}

	var info api.SegmentInfo
	for _, in := range c.s.Segments() {
		if in.ID == seg {
			info = in
		}
	}
	if info.Status != "rebuilding" || info.Size != 0 || info.Rebuild == nil {
		t.Errorf("segment.list: %+v; want rebuilding, size 0 (not the sum of three partitions), with progress", info)
	}
	if d, err := c.s.SegmentDetail(seg); err != nil || d.Status != "rebuilding" || d.Size != 0 {
		t.Errorf("segment.get: %+v, %v; want rebuilding, size 0", d, err)
	}
	st := c.s.Status()
	if len(st.Partitions) != n || st.Partitions[sick].Rebuilding != 1 || st.Partitions[0].Rebuilding != 0 ||
		!slices.ContainsFunc(st.Rebuilding, func(r api.RebuildStatus) bool { return r.Segment == seg }) {
		t.Errorf("status: rebuilding %+v, partitions %+v; want the segment, in partition %d", st.Rebuilding, st.Partitions, sick)
	}
	if got := c.s.UnavailableSegments(); !slices.Contains(got, seg) {
		t.Errorf("unavailable segments %v; want %s", got, seg)
	}

	_, err := c.s.SegmentCount("nope")
	if codeOf(err) != api.CodeNotFound || !strings.Contains(err.Error(), "partition ") || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown segment: %v (code %s); want a 404 naming the partition and the segment", err, codeOf(err))
	}
	many := make([]string, 20)
	for i := range many {
		many[i] = fmt.Sprintf("event%d", i)
	}
	_, err = c.s.AnalyzeEvents(ctx, &api.AnalysisEventsRequest{Events: many, Measures: []string{"uniques"}, From: "2025-01-01", To: "2025-12-31",
		Segments: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t"}})
	if codeOf(err) != api.CodeBadRequest || strings.Contains(err.Error(), "partition") {
		t.Errorf("too many values: %v (code %s); want the 400 as one engine says it, without a partition", err, codeOf(err))
	}
}

// TestADeadlineStopsEveryPartition: an analysis whose context is done
// answers the context's error (a 503 to the client), not a partial sum.
func TestADeadlineStopsEveryPartition(t *testing.T) {
	t.Parallel()
	testDeadline(t, nil)
}

// testDeadline is TestADeadlineStopsEveryPartition with the partitions
// reached through wrap.
func testDeadline(t *testing.T, wrap wrapParts) {
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	c := newClusterWith(t, 4, time.UTC, clock, wrap)
	c.apply(t, &ingest.Message{Batch: rules.Batch{Events: []rules.Event{{User: "u1", Name: "view", Time: clock.Now().UnixMilli()}}}})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := c.s.AnalyzeFunnel(ctx, &api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: "view"}}, Window: "1d"})
	if codeOf(err) != api.CodeUnavailable || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v (code %s), want the deadline, a 503", err, codeOf(err))
	}
}

// TestPageWalksAndSetsCrossBlocks puts about 70,000 users in each of three
// partitions, so that local ids fill more than one block of 2^16 and
// global ids interleave the partitions' blocks (3 does not divide 2^16):
// a walk with the largest pages sees every member once in ascending order,
// and negation is over exactly the users seen.
func TestPageWalksAndSetsCrossBlocks(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("210,000 users")
	}
	testCrossBlocks(t, nil)
}

// testCrossBlocks is TestPageWalksAndSetsCrossBlocks with the partitions
// reached through wrap.
func testCrossBlocks(t *testing.T, wrap wrapParts) {
	const n, users = 3, 210_000
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	c := newClusterWith(t, n, time.UTC, clock, wrap)
	all := make([]string, users)
	for i := range all {
		all[i] = fmt.Sprintf("user-%06d", i)
	}
	c.apply(t, &ingest.Message{Upload: &ingest.StaticUpload{Segment: "beta", Users: all, Replace: true}})
	var some []string
	for i := 0; i < users; i += 3 {
		some = append(some, all[i])
	}
	c.apply(t, &ingest.Message{Upload: &ingest.StaticUpload{Segment: "beta", Users: some, Replace: true}})
	for p, e := range c.engines {
		if u := e.Status().Users; u <= 1<<16 {
			t.Fatalf("partition %d has %d users: not past one block", p, u)
		}
	}
	var got []string
	var from, last uint32
	for pages := 0; ; pages++ {
		ids, more, err := c.s.SegmentPage("beta", from, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if (len(got) > 0 || i > 0) && id <= last {
				t.Fatalf("page %d: id %d after %d", pages, id, last)
			}
			last = id
		}
		got = append(got, userNames(t, c.s, ids)...)
		if !more {
			break
		}
		from = ids[len(ids)-1] + 1
	}
	slices.Sort(got)
	if !slices.Equal(got, some) {
		t.Fatalf("page walk: %d members, want %d", len(got), len(some))
	}
	q, _ := setexpr.Parse("!beta")
	res, err := c.s.SegmentQuery(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetCardinality() != users-uint64(len(some)) {
		t.Fatalf("!beta: %d users, want %d", res.GetCardinality(), users-len(some))
	}
	for _, name := range userNames(t, c.s, res.ToArray()[:1000]) {
		var i int
		if _, err := fmt.Sscanf(name, "user-%d", &i); err != nil || i%3 == 0 {
			t.Fatalf("!beta holds %q", name)
		}
	}
	bms, universe, err := c.s.SegmentBitmaps([]string{"beta"})
	if err != nil || bms[0].GetCardinality() != uint64(len(some)) || universe != users {
		t.Fatalf("bitmaps: %d members, universe %d, %v; want %d of %d", bms[0].GetCardinality(), universe, err, len(some), users)
	}
}
