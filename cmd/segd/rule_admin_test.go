package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segd/segd/bus/api"
)

// TestRuleApplyCommand uploads a rule file of two segments (one changes a
// file's segment, one reads another) with --wait, then reads them back
// with get, ls and history, and removes one; a file that does not compile
// is refused whole, naming its line.
func TestRuleApplyCommand(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("segments:\n  - id: buyers\n    did: {event: pay, last: 1d}\n  - id: repeat_buyers\n    all: [in_segment: buyers, {did: {event: view, count: \">= 2\", last: 7d}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runSegd(t, "rule", "apply", "-f", good, "--wait", "--nats", url, "--author", "cli")
	if err != nil || !strings.Contains(out, "buyers: revision") || !strings.Contains(out, "all serve their new revision") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = runSegd(t, "rule", "get", "repeat_buyers", "--json", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	var r api.Rule
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Source != "api" || r.Author != "cli" || r.State != "active" || r.Serving != r.Revision {
		t.Fatalf("get: %v %+v", err, r)
	}
	out, err = runSegd(t, "rule", "ls", "--nats", url)
	if err != nil || !strings.Contains(out, "repeat_buyers") || !strings.Contains(out, "buyers") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	if out, err = runSegd(t, "rule", "rm", "buyers", "--nats", url); err == nil || !strings.Contains(err.Error(), "repeat_buyers") {
		t.Fatalf("rm of a segment another reads: %v\n%s", err, out)
	}
	if out, err = runSegd(t, "rule", "rm", "repeat_buyers", "--nats", url); err != nil {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	out, err = runSegd(t, "rule", "history", "repeat_buyers", "--nats", url)
	if err != nil || !strings.Contains(out, "in_segment: buyers") || !strings.Contains(out, "deleted") {
		t.Fatalf("history: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: broken\ndid: {event: pay, last: 1d, colour: red}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runSegd(t, "rule", "apply", "-f", bad, "--nats", url); err == nil || !strings.Contains(err.Error(), "nothing applied") {
		t.Fatalf("apply of a bad file: %v", err)
	}
}
