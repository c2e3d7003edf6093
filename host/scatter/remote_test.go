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
