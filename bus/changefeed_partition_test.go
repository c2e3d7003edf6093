package bus

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// Partitions' feeds publish into one SEGD_CHANGES at once: with the shared
// lock each keeps its order (no window is refused for another feed's
// message in between), and each finds its own resume point.
func TestPartitionFeedsShareTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := startTestServer(t)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := EnsureChangesStream(ctx, js, ChangesStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var lock FeedLock
	names := []string{PartitionName(0, 2), PartitionName(1, 2)}
	feeds := make([]*ChangeFeed, 2)
	for i := range feeds {
		feeds[i] = StartChangeFeed(js, ChangeFeedOptions{Partition: names[i], PublishLock: &lock})
	}
	const steps = 300
	var wg sync.WaitGroup
	for _, f := range feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= steps; seq++ {
				// The same change at the same sequence in both partitions:
				// their ids differ by the partition, so neither is dropped.
				f.Add(seq, time.Now(), 1, func(int) FeedChange { return FeedChange{Segment: "s", User: "u", Enter: seq%2 == 0} })
			}
		}()
	}
	wg.Wait()
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i, f := range feeds {
		if err := f.Flush(fctx); err != nil {
			t.Fatal(err)
		}
		if st := f.Stats(); st.Published != steps || st.Failed != 0 {
			t.Errorf("feed %d: %+v, want %d published and no failed publish", i, st, steps)
		}
		f.Close(time.Second)
	}
	info, err := changes.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*steps {
		t.Fatalf("SEGD_CHANGES holds %d messages, want %d", info.State.Msgs, 2*steps)
	}
	for _, name := range names {
		got, err := FeedResumePointOf(ctx, changes, name, 9999, 7777, time.Hour)
		if want := uint64(steps); err != nil || got != want {
			t.Errorf("resume point of %s = %d, %v; want %d", name, got, err, want)
		}
	}
	// A partition with no message: the whole stream is read, fallback.
	if got, _ := FeedResumePointOf(ctx, changes, PartitionName(5, 6), 9999, 7777, time.Hour); got != 9999 {
		t.Errorf("resume point of a partition without messages = %d, want the fallback", got)
	}
	// None within the window: recent (a negative window ends the read at
	// once).
	if got, _ := FeedResumePointOf(ctx, changes, PartitionName(5, 6), 9999, 7777, -time.Hour); got != 7777 {
		t.Errorf("resume point without a recent message = %d, want recent", got)
	}
}

// A new owner of a partition republishes changes its predecessor already
// stored (their acknowledgements or the resume point lagged behind the
// stream: a killed host's last publishes can land after the new owner
// read where to resume), while another partition's message lies after
// them in SEGD_CHANGES. JetStream drops each as a duplicate, so it is not
// the stream's last and the next message's expected predecessor fails.
// The feed must skip the duplicates at once: it used to retry one message
// per back-off (100ms doubling to 5s), so 30 duplicates took minutes, the
// feed looked failed and a shutdown snapshot gave up waiting for it.
func TestPartitionFeedSkipsDuplicatesPromptly(t *testing.T) {
	t.Parallel()
	e := startTestServer(t)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	testFeedSkipsDuplicates(t, nc, 1)
}

// testFeedSkipsDuplicates runs the test above on SEGD_CHANGES with this
// many replicas.
func testFeedSkipsDuplicates(t *testing.T, nc *nats.Conn, replicas int) {
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := EnsureChangesStream(ctx, js, ChangesStreamConfig{Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	const dups, fresh = 30, 5
	change := func(seq uint64) func(int) FeedChange {
		return func(int) FeedChange { return FeedChange{Segment: "s", User: "u", Enter: seq%2 == 1} }
	}
	var lock FeedLock
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The previous owner: partition 0 stored sequences 1..dups, then
	// partition 1 stored one message after them.
	before := []*ChangeFeed{
		StartChangeFeed(js, ChangeFeedOptions{Partition: PartitionName(0, 2), PublishLock: &lock}),
		StartChangeFeed(js, ChangeFeedOptions{Partition: PartitionName(1, 2), PublishLock: &lock}),
	}
	for seq := uint64(1); seq <= dups; seq++ {
		before[0].Add(seq, time.Now(), 1, change(seq))
	}
	if err := before[0].Flush(fctx); err != nil {
		t.Fatal(err)
	}
	before[1].Add(dups, time.Now(), 1, change(1))
	for _, f := range before {
		if err := f.Flush(fctx); err != nil {
			t.Fatal(err)
		}
		f.Close(time.Second)
	}

	// The new owner of partition 0 resumes too early and republishes all.
	f := StartChangeFeed(js, ChangeFeedOptions{Partition: PartitionName(0, 2), PublishLock: &lock})
	defer f.Close(time.Second)
	for seq := uint64(1); seq <= dups+fresh; seq++ {
		f.Add(seq, time.Now(), 1, change(seq))
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := f.Flush(wctx); err != nil {
		t.Fatalf("the feed did not get past %d duplicates within 5s: %v, %+v", dups, err, f.Stats())
	}
	if st := f.Stats(); st.Failed != 0 {
		t.Errorf("skipping duplicates counted %d failed publishes: %+v", st.Failed, st)
	}
	info, err := changes.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(dups + 1 + fresh); info.State.Msgs != want {
		t.Fatalf("SEGD_CHANGES holds %d messages, want %d (each change once)", info.State.Msgs, want)
	}
	if got, err := FeedResumePointOf(ctx, changes, PartitionName(0, 2), 0, 0, time.Hour); err != nil || got != dups+fresh {
		t.Fatalf("resume point %d, %v; want %d", got, err, dups+fresh)
	}
}

// TestFeedsOfTwoHostsKeepOrder: the feeds of partitions run by two hosts
// (two connections, two publish locks, ChangeFeedOptions.OtherHosts)
// publish into SEGD_CHANGES at the same time. Each message expects the
// stream's last sequence, so one host's message refuses the other's; that
// is contention, not a failure: it is sent again at once, with no
// back-off (which grew to 5 s and delayed every change notice behind it)
// and no failed publish counted. Every change is stored once, and each
// partition's in the order it was added: with a window of several
// messages in flight, another host's message between two of them let the
// later one in before the earlier.
func TestFeedsOfTwoHostsKeepOrder(t *testing.T) {
	t.Parallel()
	e := startTestServer(t)
	ctx := context.Background()
	const perFeed = 400
	var feeds []*ChangeFeed
	for n := range 2 {
		nc, err := e.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := EnsureChangesStream(ctx, js, ChangesStreamConfig{}); err != nil {
			t.Fatal(err)
		}
		// Each host has its own lock: nothing orders the two.
		feeds = append(feeds, StartChangeFeed(js, ChangeFeedOptions{Partition: PartitionName(n, 2), PublishLock: &FeedLock{}, OtherHosts: true}))
	}
	done := make(chan struct{})
	for n, f := range feeds {
		go func() {
			defer func() { done <- struct{}{} }()
			for seq := uint64(1); seq <= perFeed; seq++ {
				f.Add(seq, time.Now(), 1, func(int) FeedChange {
					return FeedChange{Segment: "s", User: fmt.Sprintf("u%d", n), Enter: seq%2 == 1}
				})
			}
		}()
	}
	<-done
	<-done
	// Without contention 800 small messages are stored well within this;
	// one back-off step of the old loop was 100 ms, growing to 5 s.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, f := range feeds {
		if err := f.Flush(fctx); err != nil {
			t.Fatalf("flush: %v, %+v", err, f.Stats())
		}
	}
	for n, f := range feeds {
		st := f.Stats()
		if st.Failed != 0 {
			t.Errorf("partition %d: %d failed publishes counted for the other host's messages (%+v)", n, st.Failed, st)
		}
		if st.Published != perFeed {
			t.Errorf("partition %d: %d changes stored, want %d", n, st.Published, perFeed)
		}
		f.Close(time.Second)
	}
	js, err := jetstream.New(feedsConn(t, e))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := js.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := changes.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := changes.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		p := m.Header.Get(HeaderPartition)
		es, err := strconv.ParseUint(m.Header.Get(api.HeaderEventsSeq), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if es != last[p]+1 {
			t.Fatalf("SEGD_CHANGES seq %d: partition %s's change of events seq %d follows that of %d: out of order or lost", seq, p, es, last[p])
		}
		last[p] = es
	}
}

// feedsConn connects to e for the test's reads.
func feedsConn(t *testing.T, e *Embedded) *nats.Conn {
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
