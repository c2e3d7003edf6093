package engine

import (
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

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

// membership is what readers see of one segment: the members, when each
// entered, and the daily history. Guarded by Engine.mu.
type membership struct {
	members *roaring.Bitmap
	// since[u] is when user u entered, in Unix seconds (4 bytes a user: a
	// map would cost ten times that at a million members).
	since   []uint32
	history []historyDay
	updated time.Time
}

// apply records enters and exits at time now on day today.
func (m *membership) apply(enter, exit []uint32, now time.Time, today dayIndex) {
	if len(m.history) == 0 || m.history[len(m.history)-1].day != today {
		m.history = append(m.history, historyDay{day: today, size: m.members.GetCardinality()})
		if len(m.history) > maxHistoryDays {
			m.history = m.history[len(m.history)-maxHistoryDays:]
		}
	}
	h := &m.history[len(m.history)-1]
	sec := uint32(now.Unix())
	for _, u := range enter {
		if m.members.CheckedAdd(u) {
			h.entered++
			for int(u) >= len(m.since) {
				m.since = append(m.since, make([]uint32, max(1024, len(m.since)))...)
			}
			m.since[u] = sec
		}
	}
	for _, u := range exit {
		if m.members.CheckedRemove(u) {
			h.left++
		}
	}
	h.size = m.members.GetCardinality()
	m.updated = now
}

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
