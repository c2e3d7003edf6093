package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRuleValidateRetentionDays: --retention-days 0 used to mean the
// 90-day default; a retention must be at least a day.
func TestRuleValidateRetentionDays(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, []byte("segments:\n  - id: w\n    did: {event: pay, last: 30d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, days := range []string{"0", "-3"} {
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"rule", "validate", "--retention-days", days, file})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "--retention-days "+days+": must be at least 1") {
			t.Errorf("--retention-days %s: err = %v, output %q", days, err, out.String())
		}
	}
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"rule", "validate", "--retention-days", "20", file})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "longer than the 20d") {
		t.Errorf("a 30d window with --retention-days 20: err = %v", err)
	}
}
