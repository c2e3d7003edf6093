package bus

import (
	"testing"

	"github.com/segd/segd/bus/clustertest"
)

// TestMain lets bus/clustertest re-execute this test binary as a
// nats-server node.
func TestMain(m *testing.M) { clustertest.Main(m) }

// TestFeedSkipsDuplicatesOnReplicatedStream is
// TestPartitionFeedSkipsDuplicatesPromptly on a 3-node cluster with
// SEGD_CHANGES at 3 replicas. A replicated stream checks a message's
// expected last msg id only when it applies it, and a mismatch there is a
// critical write error that stops the stream on every replica (nats-server
// 2.15: "last msgid mismatch", then 503 to every request): a republished
// duplicate followed by a message expecting it broke SEGD_CHANGES for
// good, and every host's change feed and snapshots with it.
func TestFeedSkipsDuplicatesOnReplicatedStream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	t.Parallel()
	c := clustertest.Start(t, clustertest.Options{})
	testFeedSkipsDuplicates(t, c.Connect(t), 3)
}
