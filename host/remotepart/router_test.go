package remotepart_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/remotepart"
	"github.com/segd/segd/ingest"

	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/remotepart/remotetest"
	"github.com/segd/segd/host/scatter"
	"github.com/segd/segd/rules"
)

// newLocals returns n partitions' Locals, each a real engine and analysis
// index on one static segment.
func newLocals(t *testing.T, n int) []scatter.Part {
	parts, _ := newEngines(t, n)
	return parts
}

// newEngines is newLocals with the engines.
func newEngines(t *testing.T, n int) ([]scatter.Part, []*engine.Engine) {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "test.yaml", Data: []byte("segments:\n  - id: beta\n    static: true\n")}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	var parts []scatter.Part
	var engines []*engine.Engine
	for range n {
		ix := analysis.New(analysis.Config{Now: clock.Now})
		e := engine.New(engine.Config{Segments: segs, Clock: clock, TickInterval: time.Hour, Observer: ix})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		parts = append(parts, scatter.NewLocal(scatter.LocalConfig{Engine: e, Index: ix}))
		engines = append(engines, e)
	}
	return parts, engines
}

// TestAPointLookupIsNotHeldBehindASlowRequest: while a request of a
// partition runs long on its owner, a point lookup of the same partition
// is answered at once (the Router once answered a partition's requests one
// at a time, so every member.check waited for the analysis before it).
// Slow ops run at most cluster.SlowPerPartition at once; the next waits
// for a slot.
func TestAPointLookupIsNotHeldBehindASlowRequest(t *testing.T) {
	t.Parallel()
	s := remotetest.Start(t, newLocals(t, 1), remotetest.Options{})
	started, release := make(chan int, 8), make(chan struct{})
	block := func(ctx context.Context, n int, req []byte) ([]byte, error) {
		started <- n
		select {
		case <-release:
			return []byte("done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for op, h := range map[string]func(string, cluster.Handler) error{"long": s.Router.Handle, "analysis": s.Router.HandleSlow} {
		if err := h(op, block); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	opts := cluster.ForwardOptions{AttemptTimeout: 20 * time.Second, MaxWait: 20 * time.Second}
	answers := make(chan error, 8)
	forward := func(op string) {
		_, err := cluster.Forward(ctx, s.Caller, 0, op, nil, opts)
		answers <- err
	}
	go forward("long")
	<-started
	// The partition is busy with "long": a point lookup still answers.
	quick := cluster.ForwardOptions{AttemptTimeout: 2 * time.Second, MaxWait: 2 * time.Second}
	if _, err := s.Remote[0].SegmentCount("beta"); err != nil {
		t.Fatalf("segment count while a request runs: %v", err)
	}
	if _, err := cluster.Forward(ctx, s.Caller, 0, "segment-count", []byte(`{"segment":"beta"}`), quick); err != nil {
		t.Fatalf("forwarded count while a request runs: %v", err)
	}
	// Two slow ops run; the third waits for one of them.
	for range cluster.SlowPerPartition {
		go forward("analysis")
		<-started
	}
	go forward("analysis")
	select {
	case <-started:
		t.Fatalf("a slow op started while %d ran", cluster.SlowPerPartition)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := s.Remote[0].SegmentCount("beta"); err != nil {
		t.Fatalf("segment count while slow ops run: %v", err)
	}
	close(release)
	<-started // the third, once a slot freed
	for range 2 + cluster.SlowPerPartition {
		if err := <-answers; err != nil {
			t.Errorf("blocked request: %v", err)
		}
	}
}

// TestARequestOutlastsTheLeaseDeadline: a handler's context ends when its
// caller stops waiting or the lease ends, not at the lease's current
// deadline (it used to: with a 1 s lease, any request running past the
// next renewal was cut with "context deadline exceeded", a 500).
func TestARequestOutlastsTheLeaseDeadline(t *testing.T) {
	t.Parallel()
	s := remotetest.Start(t, newLocals(t, 1), remotetest.Options{Lease: time.Second})
	if err := s.Router.HandleSlow("work", func(ctx context.Context, n int, req []byte) ([]byte, error) {
		// Work for two leases' length (the lease renews meanwhile).
		select {
		case <-time.After(2 * time.Second):
			return []byte("worked"), nil
		case <-ctx.Done():
			return nil, fmt.Errorf("cut after %s: %w", "work", context.Cause(ctx))
		}
	}); err != nil {
		t.Fatal(err)
	}
	got, err := cluster.Forward(context.Background(), s.Caller, 0, "work", nil, cluster.ForwardOptions{AttemptTimeout: 10 * time.Second, MaxWait: 10 * time.Second})
	var se *cluster.StatusError
	if err != nil || string(got) != "worked" {
		errors.As(err, &se)
		t.Fatalf("got %q, %v (%+v); want the work done", got, err, se)
	}
}

// TestAReplyPastMaxReplyIsA413: a partition's bitmaps of 32 KB come back
// whole in chunks of an 8 KiB max payload, and past the caller's MaxReply
// they are a 413 naming the partition, not a truncated set.
func TestAReplyPastMaxReplyIsA413(t *testing.T) {
	t.Parallel()
	parts, engines := newEngines(t, 1)
	// Every user is seen, then every third is the segment: no runs to
	// compress.
	var all, some []string
	for i := range 200_000 {
		all = append(all, fmt.Sprintf("user-%06d", i))
		if i%3 == 0 {
			some = append(some, all[i])
		}
	}
	for seq, users := range [][]string{all, some} {
		if err := engines[0].Apply(context.Background(), &ingest.Message{Seq: uint64(seq + 1), Upload: &ingest.StaticUpload{Segment: "beta", Users: users, Replace: true}}); err != nil {
			t.Fatal(err)
		}
	}
	want, _, err := parts[0].SegmentBitmaps([]string{"beta"})
	if err != nil {
		t.Fatal(err)
	}
	whole := remotetest.Start(t, parts, remotetest.Options{MaxPayload: 8 << 10})
	got, _, err := whole.Remote[0].SegmentBitmaps([]string{"beta"})
	if err != nil || !got[0].Equals(want[0]) {
		t.Fatalf("bitmaps in chunks: %v; want %d members", err, want[0].GetCardinality())
	}
	if size := want[0].GetSerializedSizeInBytes(); size < 24<<10 {
		t.Fatalf("the bitmap takes %d bytes: not past the limits", size)
	}
	small := remotetest.Start(t, parts, remotetest.Options{MaxPayload: 8 << 10, Remote: remotepart.Options{MaxReply: 16 << 10}})
	_, _, err = small.Remote[0].SegmentBitmaps([]string{"beta"})
	var ce *ingest.Error
	if !errors.As(err, &ce) || ce.Code != api.CodeTooLarge || !strings.Contains(err.Error(), "16384 bytes") {
		t.Fatalf("bitmaps past MaxReply: %v; want a 413 naming the limit", err)
	}
}
