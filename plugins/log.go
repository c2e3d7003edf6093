package plugins

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxLogLine is the longest plugin log line kept; longer ones are cut.
const maxLogLine = 1024

// guestLogger forwards a plugin's log lines to the host logger through a
// token bucket: rate lines per second, bursts of 2*rate. Dropped lines are
// counted and reported with the next line that passes.
type guestLogger struct {
	log     *slog.Logger
	rate    float64
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	pending uint64
	dropped *atomic.Uint64
}

func newGuestLogger(log *slog.Logger, perSecond int, dropped *atomic.Uint64) *guestLogger {
	r := float64(perSecond)
	return &guestLogger{log: log, rate: r, tokens: 2 * r, last: time.Now(), dropped: dropped}
}

func (g *guestLogger) logLine(level slog.Level, msg string) {
	g.mu.Lock()
	now := time.Now()
	g.tokens = min(2*g.rate, g.tokens+now.Sub(g.last).Seconds()*g.rate)
	g.last = now
	if g.tokens < 1 {
		g.pending++
		g.mu.Unlock()
		g.dropped.Add(1)
		return
	}
	g.tokens--
	dropped := g.pending
	g.pending = 0
	g.mu.Unlock()
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine] + "…"
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if dropped > 0 {
		g.log.Warn("plugin log lines dropped by the rate limit", "dropped", dropped)
	}
	g.log.Log(context.Background(), level, msg)
}

// tail is a guest's stdout or stderr: it keeps the first tailSize bytes
// written since the last reset (where a Go panic or fatal error puts its
// message) for fault reports, and forwards complete lines to the plugin's
// log.
type tail struct {
	g     *guestLogger
	level slog.Level
	buf   []byte
	line  []byte
}

const tailSize = 1024

func (t *tail) Write(p []byte) (int, error) {
	if room := tailSize - len(t.buf); room > 0 {
		t.buf = append(t.buf, p[:min(room, len(p))]...)
	}
	for _, c := range p {
		if c == '\n' {
			if len(t.line) > 0 {
				t.g.logLine(t.level, string(t.line))
			}
			t.line = t.line[:0]
			continue
		}
		if len(t.line) < maxLogLine+1 {
			t.line = append(t.line, c)
		}
	}
	return len(p), nil
}

// text returns the kept text, trimmed.
func (t *tail) text() string {
	return strings.TrimSpace(strings.ToValidUTF8(string(t.buf), "\uFFFD"))
}

func (t *tail) reset() { t.buf = t.buf[:0]; t.line = t.line[:0] }
