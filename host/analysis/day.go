package analysis

import (
	"time"

	"github.com/segd/segd/rules"
)

// Day is a calendar day (rules.CalendarDay): the number of days from
// 1970-01-01 to the date, the same in every time zone.
type Day = rules.CalendarDay

// DayOfDate returns the Day of a calendar date.
func DayOfDate(y int, m time.Month, d int) Day { return rules.DayOfDate(y, m, d) }

// ParseDay parses a date written YYYY-MM-DD.
func ParseDay(s string) (Day, error) { return rules.ParseDay(s) }

// DayIn returns the calendar day of t in loc.
func DayIn(t time.Time, loc *time.Location) Day { return rules.DayOf(t.UnixMilli(), loc) }
