package main

import (
	"encoding/json"
	"fmt"
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

// TestRuleDiffCommand: diff -f says what apply would change (new,
// changed with the lines, unchanged whatever the formatting, and the
// API's segments the files leave alone), --exit-code says whether
// anything differs, and diff SEGMENT --from --to compares two revisions;
// each with --json.
func TestRuleDiffCommand(t *testing.T) {
	t.Parallel()
	url := startSegd(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("v1.yaml", "segments:\n  - id: buyers\n    did: {event: pay, last: 1d}\n  - id: viewers\n    did: {event: view, last: 1d}\n")
	if out, err := runSegd(t, "rule", "apply", "-f", v1, "--wait", "--nats", url); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// The same definitions, formatted otherwise and commented: unchanged.
	same := write("same.yaml", "# the same\n- id: buyers\n  did:\n    event: pay\n    last: 1d\n- {id: viewers, did: {event: view, last: 1d}}\n")
	out, err := runSegd(t, "rule", "diff", "-f", same, "--exit-code", "--nats", url)
	if err != nil || strings.Count(out, "unchanged") != 2 {
		t.Fatalf("diff of the same definitions: %v\n%s", err, out)
	}
	v2 := write("v2.yaml", "segments:\n  - id: buyers\n    did: {event: pay, last: 3d}\n  - id: big_buyers\n    did: {event: pay, where: \"props.amount > 50\", last: 1d}\n")
	out, err = runSegd(t, "rule", "diff", "-f", v2, "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"buyers: changed", "-    last: 1d", "+    last: 3d", "big_buyers: new", "viewers: only in SEGD_RULES"} {
		if !strings.Contains(out, want) {
			t.Fatalf("diff -f v2.yaml lacks %q:\n%s", want, out)
		}
	}
	if _, err := runSegd(t, "rule", "diff", "-f", v2, "--exit-code", "--nats", url); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Fatalf("--exit-code with differences: %v", err)
	}
	out, err = runSegd(t, "rule", "diff", "-f", v2, "--json", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	var r ruleDiffReply
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, d := range r.Segments {
		status[d.Segment] = d.Status
	}
	if !r.Differs || status["buyers"] != "changed" || status["big_buyers"] != "new" || status["viewers"] != "stored_only" || len(r.Segments) != 3 {
		t.Fatalf("diff --json: %+v", r)
	}

	// Two revisions of a segment.
	if out, err := runSegd(t, "rule", "apply", "-f", v2, "--wait", "--nats", url); err != nil {
		t.Fatalf("apply v2: %v\n%s", err, out)
	}
	out, err = runSegd(t, "rule", "history", "buyers", "--json", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	var h api.RuleHistoryReply
	if err := json.Unmarshal([]byte(out), &h); err != nil || len(h.Revisions) != 2 {
		t.Fatalf("history: %v %+v", err, h)
	}
	r1, r2 := h.Revisions[0].Revision, h.Revisions[1].Revision
	out, err = runSegd(t, "rule", "diff", "buyers", "--json", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	r = ruleDiffReply{}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Segments) != 1 {
		t.Fatalf("diff buyers --json: %v %s", err, out)
	}
	if d := r.Segments[0]; d.Status != "changed" || d.FromRevision != r1 || d.ToRevision != r2 ||
		!strings.Contains(d.Diff, "-    last: 1d\n") || !strings.Contains(d.Diff, "+    last: 3d\n") || !strings.Contains(d.Diff, "     event: pay\n") {
		t.Fatalf("diff of the two revisions: %+v", d)
	}
	out, err = runSegd(t, "rule", "diff", "buyers", "--from", fmt.Sprint(r2), "--to", fmt.Sprint(r1), "--nats", url)
	if err != nil || !strings.Contains(out, "+    last: 1d") || !strings.Contains(out, "-    last: 3d") {
		t.Fatalf("diff --from newer --to older: %v\n%s", err, out)
	}
	if _, err := runSegd(t, "rule", "diff", "buyers", "--from", "999", "--nats", url); err == nil || !strings.Contains(err.Error(), "no revision 999") {
		t.Fatalf("diff of a revision not kept: %v", err)
	}
	if _, err := runSegd(t, "rule", "diff", "buyers", "-f", v2, "--nats", url); err == nil {
		t.Fatal("diff with both SEGMENT and -f: no error")
	}
}

// TestLineDiff: the lines of both texts in order, those of a common
// subsequence unmarked.
func TestLineDiff(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ a, b, want string }{
		{"", "", ""},
		{"x\n", "", "-x\n"},
		{"", "x\n", "+x\n"},
		{"a\nb\nc\n", "a\nc\n", " a\n-b\n c\n"},
		{"a\nb\n", "a\nB\nc\n", " a\n-b\n+B\n+c\n"},
	} {
		if got := lineDiff(c.a, c.b); got != c.want {
			t.Errorf("lineDiff(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

// TestRuleDiffAsDocumented: the diff of docs/api.md's example.
func TestRuleDiffAsDocumented(t *testing.T) {
	t.Parallel()
	a, err := normalDefinition("id: checkout_fans\ndid: {event: checkout, count: \">= 2\", last: 30d}\n")
	if err != nil {
		t.Fatal(err)
	}
	b, err := normalDefinition("# fans\nid: checkout_fans\ndid:\n  event: checkout\n  count: \">= 3\"\n  last: 30d\n")
	if err != nil {
		t.Fatal(err)
	}
	want := " id: checkout_fans\n did:\n     event: checkout\n-    count: '>= 2'\n+    count: '>= 3'\n     last: 30d\n"
	if got := lineDiff(a, b); got != want {
		t.Fatalf("diff:\n%s\nwant (docs/api.md):\n%s", got, want)
	}
}
