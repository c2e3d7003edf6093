package api_test

import (
	"fmt"
	"testing"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

// The producers' hash must be the engine's: a user published on another
// partition's subject is not applied.
func TestPartitionIsIngestPartition(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 3, 4, 12, 256} {
		for i := range 20_000 {
			u := fmt.Sprintf("user-%d-\u00e9%d", i, i*7919)
			if got, want := api.Partition(u, n), ingest.Partition(u, n); got != want {
				t.Fatalf("api.Partition(%q, %d) = %d, ingest.Partition = %d", u, n, got, want)
			}
		}
	}
	if got := api.PartitionSubject(7); got != "segd.part.7.events" {
		t.Fatalf("PartitionSubject(7) = %q", got)
	}
}
