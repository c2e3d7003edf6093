package scatter_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/segd/segd/host/remotepart/remotetest"
	"github.com/segd/segd/host/scatter"
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
			scatter.RunEquivalence(t, loc, tc.seed, 4, func(t testing.TB, parts []scatter.Part) []scatter.Part {
				return remotetest.Start(t, parts, remotetest.Options{}).Remote
			})
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
