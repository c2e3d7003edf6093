package host

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestNewLoggerJSON: --log-format json writes one JSON object a line with
// the message's attributes; an unknown format is an error naming it.
func TestNewLoggerJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogFormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	l.Warn("skipped a message that is not a batch", "seq", uint64(7), "subject", "segd.events.x")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not JSON: %q: %v", buf.String(), err)
	}
	if line["seq"] != float64(7) || line["subject"] != "segd.events.x" || line["level"] != "WARN" {
		t.Errorf("line = %v", line)
	}
	if _, err := NewLogger(&buf, "xml", slog.LevelInfo); err == nil || !contains(err.Error(), `"xml"`) {
		t.Errorf("unknown format: err = %v", err)
	}
}
