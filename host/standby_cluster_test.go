package host

import (
	"testing"

	"github.com/segd/segd/bus/clustertest"
)

// TestMain lets bus/clustertest re-execute this test binary as a
// nats-server node.
func TestMain(m *testing.M) { clustertest.Main(m) }

// TestStandbyTakesOverOnCluster is TestStandbyTakesOver with the hosts on
// a JetStream cluster of 3 nats-servers (processes on loopback), each
// host given every node's URL, with 2 partitions.
func TestStandbyTakesOverOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster and segd as processes")
	}
	t.Parallel()
	c := clustertest.Start(t, clustertest.Options{})
	testStandbyTakesOver(t, buildSegd(t, t.TempDir()), 1, c.URL()) // a standby needs P = 1 (multihost.go)
}
