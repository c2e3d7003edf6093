package analysis

import "time"

// Day is a calendar day: the number of days from 1970-01-01 to the date,
// counted on the calendar (a date's Day is the same in every time zone).
type Day int32

// DayOfDate returns the Day of a calendar date.
func DayOfDate(y int, m time.Month, d int) Day {
	return Day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// ParseDay parses a date written YYYY-MM-DD.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, err
	}
	return DayOfDate(t.Date()), nil
}

// DayIn returns the calendar day of t in loc.
func DayIn(t time.Time, loc *time.Location) Day { return DayOfDate(t.In(loc).Date()) }

// String formats the day as YYYY-MM-DD.
func (d Day) String() string {
	return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly)
}

// Start returns the instant day d begins in loc, in Unix milliseconds.
func (d Day) Start(loc *time.Location) int64 {
	y, m, dd := time.Unix(int64(d)*86400, 0).UTC().Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, loc).UnixMilli()
}

// dayCache remembers the bounds of the last day it computed: a batch's
// events mostly fall on one or two days, and a zone lookup costs more than
// two comparisons.
type dayCache struct {
	loc        *time.Location
	start, end int64 // [start, end) in Unix ms
	day        Day
}

func (c *dayCache) dayOf(ms int64) Day {
	if c.end > c.start && ms >= c.start && ms < c.end {
		return c.day
	}
	c.day = DayIn(time.UnixMilli(ms), c.loc)
	c.start = c.day.Start(c.loc)
	c.end = (c.day + 1).Start(c.loc)
	return c.day
}
