package rules

import "time"

// CalendarDay is a calendar date counted in days from 1970-01-01. A date
// has the same CalendarDay in every time zone; DayOf finds the date of an
// instant in one. Windows, history and analysis all count days this way.
type CalendarDay int32

// DayOfDate returns the CalendarDay of a calendar date.
func DayOfDate(y int, m time.Month, d int) CalendarDay {
	return CalendarDay(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// DayOf returns the calendar date of a Unix-millisecond instant in loc.
func DayOf(ms int64, loc *time.Location) CalendarDay {
	return DayOfDate(time.UnixMilli(ms).In(loc).Date())
}

// ParseDay parses a date written YYYY-MM-DD.
func ParseDay(s string) (CalendarDay, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, err
	}
	return DayOfDate(t.Date()), nil
}

// Date returns the day's year, month and day of the month.
func (d CalendarDay) Date() (int, time.Month, int) { return time.Unix(int64(d)*86400, 0).UTC().Date() }

// String formats the day as YYYY-MM-DD.
func (d CalendarDay) String() string { return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly) }

// Start returns the instant day d begins in loc, in Unix milliseconds. On a
// day whose midnight a daylight saving change skips, it is the first
// instant of the day.
func (d CalendarDay) Start(loc *time.Location) int64 {
	y, m, dd := d.Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, loc).UnixMilli()
}

// DayCache remembers the bounds of the last days it computed: a batch's
// events mostly fall on a few days, and a time zone lookup costs more than
// a few comparisons. The zero value is not usable: set Loc.
type DayCache struct {
	Loc  *time.Location
	days [8]cachedDay
	next int // the slot the next miss fills
}

type cachedDay struct {
	start, end int64 // [start, end) in Unix ms; empty when end == 0
	day        CalendarDay
}

// DayOf returns the calendar date of ms in c.Loc.
func (c *DayCache) DayOf(ms int64) CalendarDay {
	for i := range c.days {
		if d := &c.days[i]; ms >= d.start && ms < d.end {
			return d.day
		}
	}
	day := DayOf(ms, c.Loc)
	c.days[c.next] = cachedDay{start: day.Start(c.Loc), end: (day + 1).Start(c.Loc), day: day}
	c.next = (c.next + 1) % len(c.days)
	return day
}
