package engine

import (
	"sync"
	"time"
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

// dayIndex is a calendar day in the engine's time zone, counted from
// 1970-01-01 in that zone. Windows are ranges of day indexes.
type dayIndex int32

// dayOf returns the calendar day of a Unix-millisecond time in loc.
func dayOf(ms int64, loc *time.Location) dayIndex {
	y, m, d := time.UnixMilli(ms).In(loc).Date()
	return civilDay(y, m, d)
}

func civilDay(y int, m time.Month, d int) dayIndex {
	return dayIndex(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// dayStart returns the Unix-millisecond instant at which day begins in loc.
func dayStart(day dayIndex, loc *time.Location) int64 {
	y, m, d := time.Unix(int64(day)*86400, 0).UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixMilli()
}

// dayCache remembers the bounds of the last day it computed: events of a
// batch mostly fall on one or two days, and the time zone lookup costs more
// than the comparison.
type dayCache struct {
	loc        *time.Location
	start, end int64 // [start, end) in Unix ms
	day        dayIndex
}

func (c *dayCache) dayOf(ms int64) dayIndex {
	if c.end > c.start && ms >= c.start && ms < c.end {
		return c.day
	}
	c.day = dayOf(ms, c.loc)
	c.start = dayStart(c.day, c.loc)
	c.end = dayStart(c.day+1, c.loc)
	return c.day
}
