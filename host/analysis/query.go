package analysis

import (
	"context"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
)

// Segment is one column of a side-by-side analysis: a name and its users
// as dense ids. Users nil means every user (the baseline).
type Segment struct {
	ID    string
	Users *roaring.Bitmap
}

// EventsQuery asks for daily series: for every segment, event and measure,
// one value per day from From to To inclusive.
type EventsQuery struct {
	Events   []string
	Measures []api.Measure
	From, To Day
	Segments []Segment
}

// Events answers q. Days are calendar days in the index's time zone, by
// event time; a day the index does not keep (or an event never seen) is 0.
//
// uniques is |presence ∩ segment|; total is the sum over the count index's
// bit planes of 2^i·|plane_i ∩ segment|; at_least:N compares the planes
// with N (O'Neil) and intersects with the segment; sum:PROP adds the
// property's values of the segment's events in arrival order.
func (ix *Index) Events(q EventsQuery) *api.AnalysisEventsReply {
	r, _ := ix.EventsContext(context.Background(), q)
	return r
}

// EventsContext is Events that stops when ctx is done, with ctx's error.
func (ix *Index) EventsContext(ctx context.Context, q EventsQuery) (*api.AnalysisEventsReply, error) {
	ix.read()
	defer ix.mu.RUnlock()
	n := int(q.To-q.From) + 1
	reply := &api.AnalysisEventsReply{Days: make([]string, n)}
	for i := range n {
		reply.Days[i] = (q.From + Day(i)).String()
	}
	// series[s][e][m] are filled event by event, measure by measure, so
	// that a day's work that does not depend on the segment is done once.
	series := make([]api.EventSeries, 0, len(q.Segments)*len(q.Events)*len(q.Measures))
	at := func(s, e, m int) *api.EventSeries {
		return &series[(s*len(q.Events)+e)*len(q.Measures)+m]
	}
	for _, s := range q.Segments {
		for _, e := range q.Events {
			for _, m := range q.Measures {
				series = append(series, api.EventSeries{Segment: s.ID, Event: e, Measure: m.Name, Values: make([]float64, n)})
			}
		}
	}
	for ei, name := range q.Events {
		ev, ok := ix.eventID(name)
		if !ok {
			continue
		}
		for mi, m := range q.Measures {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for i := range n {
				c := ix.cell(ev, q.From+Day(i))
				if c == nil {
					continue
				}
				var atLeast *roaring.Bitmap
				if m.Kind == api.MeasureKindAtLeast {
					atLeast = c.counts.atLeast(c.users, m.N)
				}
				for si, s := range q.Segments {
					at(si, ei, mi).Values[i] = c.measure(m, s.Users, atLeast)
				}
			}
		}
	}
	reply.Series = series
	return reply, nil
}

// measure computes one value of a cell for the users in seg (nil: all).
func (c *cell) measure(m api.Measure, seg, atLeast *roaring.Bitmap) float64 {
	switch m.Kind {
	case api.MeasureUniques:
		if seg == nil {
			return float64(c.users.GetCardinality())
		}
		return float64(c.users.AndCardinality(seg))
	case api.MeasureTotal:
		if seg == nil {
			return float64(c.total)
		}
		return float64(c.counts.sum(seg))
	case api.MeasureKindAtLeast:
		if seg == nil {
			return float64(atLeast.GetCardinality())
		}
		return float64(atLeast.AndCardinality(seg))
	case api.MeasureKindSum:
		vs := c.sums[m.Prop]
		if vs == nil {
			return 0
		}
		var sum float64
		if seg == nil {
			for _, v := range vs.vals {
				sum += v
			}
			return sum
		}
		for i, u := range vs.users {
			if seg.Contains(u) {
				sum += vs.vals[i]
			}
		}
		return sum
	}
	return 0
}

// RetentionQuery asks for a retention table.
type RetentionQuery struct {
	StartEvent, ReturnEvent string
	// From and To bound the cohort days; Days is how many days after each
	// cohort day are followed.
	From, To Day
	Days     int
	// Recurring makes a user part of every day's cohort on which they did
	// the start event; otherwise (first time) only of the first such day
	// the index keeps.
	Recurring bool
	Segments  []Segment
}

// Retention answers q with calendar days in the index's time zone. The
// cohort of day d is the users who did StartEvent on d (first_time: and on
// no kept day before d); Retained[k-1] counts those of them who did
// ReturnEvent on day d+k, for d+k up to today. Cohort days after today are
// left out.
func (ix *Index) Retention(q RetentionQuery) []api.RetentionSegment {
	r, _ := ix.RetentionContext(context.Background(), q)
	return r
}

// RetentionContext is Retention that stops when ctx is done, with ctx's
// error. A start or return event the index never saw makes empty cohorts
// or zero returns.
func (ix *Index) RetentionContext(ctx context.Context, q RetentionQuery) ([]api.RetentionSegment, error) {
	today := ix.Today()
	ix.read()
	defer ix.mu.RUnlock()
	out := make([]api.RetentionSegment, len(q.Segments))
	for i, s := range q.Segments {
		out[i] = api.RetentionSegment{Segment: s.ID, Cohorts: []api.Cohort{}}
	}
	start, okStart := ix.eventID(q.StartEvent)
	ret, okRet := ix.eventID(q.ReturnEvent)
	presence := func(ev uint32, ok bool, d Day) *roaring.Bitmap {
		if !ok {
			return nil
		}
		if c := ix.cell(ev, d); c != nil {
			return c.users
		}
		return nil
	}
	// seen is who did the start event before the cohort day (first time
	// only); empty, never nil, when the start event was never seen.
	seen := roaring.New()
	if !q.Recurring && okStart {
		var before []*roaring.Bitmap
		for d, c := range ix.cells[start] {
			if d < q.From {
				before = append(before, c.users)
			}
		}
		if len(before) > 0 {
			seen = roaring.ParOr(0, before...)
		}
	}
	empty := roaring.New()
	last := min(q.To, today)
	for d := q.From; d <= last; d++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cohort := presence(start, okStart, d)
		if cohort == nil {
			cohort = empty
		}
		if !q.Recurring {
			fresh := roaring.AndNot(cohort, seen)
			seen.Or(cohort)
			cohort = fresh
		}
		n := min(q.Days, int(today-d))
		for i, s := range q.Segments {
			members := cohort
			if s.Users != nil {
				members = roaring.And(cohort, s.Users)
			}
			c := api.Cohort{Day: d.String(), Size: members.GetCardinality(), Retained: make([]uint64, n)}
			if !members.IsEmpty() {
				for k := 1; k <= n; k++ {
					if r := presence(ret, okRet, d+Day(k)); r != nil {
						c.Retained[k-1] = members.AndCardinality(r)
					}
				}
			}
			out[i].Cohorts = append(out[i].Cohorts, c)
		}
	}
	return out, nil
}

// UserDay is the all-users baseline of one day: the users with an event
// on or before it, and those whose first event was on it.
type UserDay struct {
	Day         Day
	Seen, First uint64
}

// Users returns the baseline from day from to day to, capped at today.
// A user's first event is their first the index has kept or keeps.
func (ix *Index) Users(from, to Day) []UserDay {
	to = min(to, ix.Today())
	ix.read()
	defer ix.mu.RUnlock()
	var before uint64
	for d, n := range ix.newUsers {
		if d < from {
			before += n
		}
	}
	out := []UserDay{}
	for d := from; d <= to; d++ {
		n := ix.newUsers[d]
		before += n
		out = append(out, UserDay{Day: d, Seen: before, First: n})
	}
	return out
}

// EventNames returns the names of the indexed events, sorted.
func (ix *Index) EventNames() []string {
	ix.read()
	defer ix.mu.RUnlock()
	return slices.Sorted(slices.Values(ix.names))
}
