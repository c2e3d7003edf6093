package bus

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
	var lock sync.Mutex
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
