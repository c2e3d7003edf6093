package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSegmentPreviewPrintsEvalErrors: a preview whose predicate fails on
// every item says so, with the failure, rather than a bare "0 users".
func TestSegmentPreviewPrintsEvalErrors(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	file := filepath.Join(t.TempDir(), "nope.yaml")
	if err := os.WriteFile(file, []byte("id: p_nope\ndid: {event: pay, where: \"props.nope > 3\", last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runSegd(t, "segment", "preview", file, "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"p_nope (behavioral): 0 users", "1 item could not be judged", "invalid operation"} {
		if !strings.Contains(out, w) {
			t.Errorf("preview output lacks %q:\n%s", w, out)
		}
	}
}
