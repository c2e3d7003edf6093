package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// Log formats for NewLogger.
const (
	LogFormatLogfmt = "logfmt" // key=value lines (slog's text handler)
	LogFormatJSON   = "json"   // one JSON object a line (slog's JSON handler), for log shippers
)

// NewLogger returns a logger writing format (LogFormatLogfmt or
// LogFormatJSON) to w at level and above. Log lines about one
// events-stream message carry its "seq" and "subject".
func NewLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case LogFormatLogfmt, "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case LogFormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want %s or %s", format, LogFormatLogfmt, LogFormatJSON)
}

// quietHandler passes on only records at or above min. The embedded NATS
// server announces itself in some thirty info lines; segd shows its warnings
// and errors, and all of it when segd's own log is at debug.
type quietHandler struct {
	slog.Handler
	min slog.Level
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs), h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.min}
}

// natsLogger is the logger handed to the embedded server.
func natsLogger(l *slog.Logger) *slog.Logger {
	h := l.Handler()
	if h.Enabled(context.Background(), slog.LevelDebug) {
		return l.With("component", "nats")
	}
	return slog.New(quietHandler{h, slog.LevelWarn}).With("component", "nats")
}
