package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIMessages: wrong arguments and flags print the usage line with
// the error; a reply error names segd once; counts agree in number.
func TestCLIMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "show"}, "error: accepts 1 arg(s), received 0\nusage: segd user show USER [flags]\nRun 'segd user show --help' for more.\n"},
		{[]string{"member", "check", "u1"}, "error: accepts 2 arg(s), received 1\nusage: segd member check USER SEGMENT [flags]\n"},
		{[]string{"status", "--bogus"}, "error: unknown flag: --bogus\nusage: segd status [flags]\n"},
	} {
		_, err := runSegd(t, tc.args...)
		if err == nil {
			t.Fatalf("%v: no error", tc.args)
		}
		var b bytes.Buffer
		printError(&b, err)
		if !strings.HasPrefix(b.String(), tc.want) {
			t.Errorf("%v printed:\n%s\nwant it to start with:\n%s", tc.args, b.String(), tc.want)
		}
	}

	url := startSegd(t)
	_, err := runSegd(t, "segment", "count", "nope", "--nats", url)
	if err == nil {
		t.Fatal("unknown segment: no error")
	}
	var b bytes.Buffer
	printError(&b, err)
	if want := "error: segd.v1.segment.count: 404 segment \"nope\" is not defined\n"; b.String() != want {
		t.Errorf("printed %q, want %q (segd named once, no usage line)", b.String(), want)
	}

	file := filepath.Join(t.TempDir(), "one.yaml")
	if err := os.WriteFile(file, []byte("segments:\n  - id: buyers\n    did: {event: pay, last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runSegd(t, "rule", "validate", file)
	if err != nil || out != "ok: 1 segment\n" {
		t.Errorf("rule validate: %q, %v; want \"ok: 1 segment\"", out, err)
	}
}

// TestHistorySaysWhereItStarts: on a first start over a log, the days
// before segd recorded anything show 0; segment history and analyze trend
// say from which day the history is recorded.
func TestHistorySaysWhereItStarts(t *testing.T) {
	t.Parallel()
	url := startSegd(t) // events of Nov 1-3, applied on Nov 3
	out, err := runSegd(t, "segment", "history", "buyers", "--from", "2026-11-01", "--to", "2026-11-03", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	wantInOrder(t, out, "2026-11-01", "0", "2026-11-03", "1", "history recorded since 2026-11-03: the days before it show 0 because nothing was recorded")
	out, err = runSegd(t, "analyze", "trend", "buyers", "--from", "2026-11-01", "--to", "2026-11-03", "--nats", url)
	if err != nil {
		t.Fatal(err)
	}
	wantInOrder(t, out, "BUYERS", "2026-11-03", "buyers: history recorded since 2026-11-03")
	out, err = runSegd(t, "segment", "history", "buyers", "--from", "2026-11-03", "--to", "2026-11-03", "--nats", url)
	if err != nil || strings.Contains(out, "recorded since") {
		t.Errorf("a range inside the history has no note: %v\n%s", err, out)
	}
}
