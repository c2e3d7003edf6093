package engine

import (
	"fmt"
	"time"
)

// Id spaces: user ids and the values a distinct aggregate interns are dense
// uint32s, so each space holds at most 2^32 entries. What cannot get an id
// once a space is full is refused and counted, never given an id that is
// already taken (which would merge two users or two values).
const (
	// MaxUsers is the number of distinct user ids the engine can hold.
	MaxUsers = 1 << 32
	// MaxDistinctValues is the number of distinct values one distinct
	// condition can tell apart.
	MaxDistinctValues = 1 << 32
)

// idLimits are the sizes of the id spaces (tests make them small) and what
// was refused for want of room. Written by the writer only; Status reads
// the counters through the published stats.
type idLimits struct {
	values        uint64 // per distinct condition
	refusedUsers  uint64
	refusedValues uint64
	first         string // the first refusal, user or value
	// logged is when a refusal was last logged: at most one line a minute.
	logged time.Time
}

// refuseValue counts an event left out of a distinct condition whose value
// table is full.
func (l *idLimits) refuseValue(cond string, value string) {
	l.refusedValues++
	if l.first == "" {
		l.first = fmt.Sprintf("a distinct condition on props.%s has %d values, its limit: events with a new value (%q) are left out of it",
			cond, l.values, truncateText(value, 64))
	}
}

// logRefusals logs, at most once a minute, that something was refused.
func (e *Engine) logRefusals(what string, n uint64, args ...any) {
	now := e.clock.Now()
	if !e.limits.logged.IsZero() && now.Sub(e.limits.logged) < time.Minute {
		return
	}
	e.limits.logged = now
	e.logger.Error("an id space is full; refusing what needs a new id (logged at most once a minute)",
		append([]any{"what", what, "refused_so_far", n}, args...)...)
}

// truncateText cuts s to n bytes at most, marking the cut.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}
