package engine

import (
	"sync"
	"time"

	"github.com/segd/segd/rules"
)

// Clock tells the engine what time it is. Windows move when it crosses a day
// boundary; tests inject a ManualClock to step across them.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// ManualClock is a Clock that moves only when told to. It is safe for
// concurrent use.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewManualClock returns a clock stopped at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{now: t} }

// Now implements Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// dayIndex is a calendar day in the engine's time zone.
type dayIndex = rules.CalendarDay

// dayOf returns the calendar day of a Unix-millisecond time in loc.
func dayOf(ms int64, loc *time.Location) dayIndex { return rules.DayOf(ms, loc) }
