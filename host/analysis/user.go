package analysis

import "strings"

// UserEvent is one event of a user's timeline: its time (Unix ms) and name.
type UserEvent struct {
	Time  int64
	Event string
}

// UserEvents returns the events of user u (a dense id) on days from..to,
// newest first: the page that skips offset of them and holds at most
// limit; more reports whether events follow the page. Events at the same
// millisecond come in the reverse of their timeline order. The events of
// named predicates ("@ID") are left out: they repeat events the user did.
// The work is a walk over the user's timeline in the range (a few bytes an
// event).
func (ix *Index) UserEvents(u uint32, from, to Day, offset, limit int) (events []UserEvent, more bool) {
	ix.read()
	defer ix.mu.RUnlock()
	lo, hi := from.Start(ix.loc), (to+1).Start(ix.loc)-1
	all, _ := ix.entries(u, nil, nil, lo, hi)
	events = []UserEvent{}
	skipped := 0
	for i := len(all) - 1; i >= 0; i-- {
		name := ix.names[all[i].ev]
		if strings.HasPrefix(name, "@") {
			continue
		}
		if skipped < offset {
			skipped++
			continue
		}
		if len(events) == limit {
			return events, true
		}
		events = append(events, UserEvent{Time: all[i].t, Event: name})
	}
	return events, false
}
