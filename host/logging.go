package host

import (
	"context"
	"log/slog"
)

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
