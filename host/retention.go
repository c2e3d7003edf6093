package host

import (
	"fmt"
	"time"
)

// day is the unit of retention: rule windows, the engine and the analysis
// index count whole calendar days.
const day = 24 * time.Hour

// checkRetention refuses a retention that is not a whole number of days,
// at least one. The events stream keeps Retention (by publish time); the
// engine, the analysis index and rule windows keep Retention/24h calendar
// days, today included. A part of a day would have to be rounded one way
// or the other for them, and under a day would round to 0, which each
// of them reads as its 90-day default: refusing it is the only answer
// that cannot surprise.
func checkRetention(d time.Duration) error {
	if d < day {
		return fmt.Errorf("retention %s: segd keeps whole calendar days of events; give at least 24h (1 day)", d)
	}
	if d%day != 0 {
		n := int(d / day)
		return fmt.Errorf("retention %s is not a whole number of days: segd keeps whole calendar days; give %dh (%s) or %dh (%s)",
			d, 24*n, days(n), 24*(n+1), days(n+1))
	}
	return nil
}

func days(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// retentionDays is the retention in days; Start has checked it.
func (s *Server) retentionDays() int { return int(s.cfg.Retention / day) }
