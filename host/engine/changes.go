package engine

import "time"

// Change is a user entering or leaving a segment.
type Change struct {
	Segment string
	User    string
	// Enter is true when the user entered, false when they left.
	Enter bool
	// Time is the engine's clock when the change was applied.
	Time time.Time
}

// HistoryDay is one calendar day of a segment's history.
type HistoryDay struct {
	// Day is the calendar date in the engine's time zone, e.g. "2026-11-28".
	Day string
	// Size is the segment's size at the end of the day (or now, for today).
	Size uint64
	// Entered and Left count the changes during the day.
	Entered, Left uint64
}

// historyDay is one entry of a segment's history, kept in day order.
type historyDay struct {
	day           dayIndex
	size          uint64
	entered, left uint64
}

// maxHistoryDays bounds the history kept per segment.
const maxHistoryDays = 400

// days returns the history from day `from` to day `to` inclusive, filling
// days without changes with the size carried over.
func (m *membership) days(from, to dayIndex) []historyDay {
	var out []historyDay
	i := 0
	var size uint64
	for d := from; d <= to; d++ {
		for i < len(m.history) && m.history[i].day < d {
			size = m.history[i].size
			i++
		}
		if i < len(m.history) && m.history[i].day == d {
			out = append(out, m.history[i])
			continue
		}
		out = append(out, historyDay{day: d, size: size})
	}
	return out
}
