package engine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEngineKnowsNoNATS keeps the engine and the analysis index free of
// NATS: what they share with the bus lives in package ingest (and the JSON
// types in bus/api), so that they build, test and link without a server.
func TestEngineKnowsNoNATS(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/segd/segd/host/engine", "github.com/segd/segd/host/analysis").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "nats-io") || pkg == "github.com/segd/segd/bus" {
			t.Errorf("host/engine or host/analysis depends on %s", pkg)
		}
	}
}
