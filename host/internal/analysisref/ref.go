// Package analysisref is a naive reference of segd's analyses over the raw
// events, for tests: no bitmaps, no timelines, no day arithmetic shared
// with the index (days are the strings time.Format gives in the zone). It
// is slow on purpose and independent of package analysis.
package analysisref

import (
	"sort"
	"sync"
	"time"

	"github.com/segd/segd/rules"
)

// Raw is the input of the reference: events, each event's dense user id,
// and the parameters the index was built with.
type Raw struct {
	Events []rules.Event
	IDs    []uint32
	Loc    *time.Location
	Now    time.Time
	Days   int // history kept

	once   sync.Once
	dates  []string // each event's date, formatted once
	oldest string   // the oldest date kept
}

// date returns the date of event i in the zone.
func (r *Raw) date(i int) string {
	r.once.Do(func() {
		r.dates = make([]string, len(r.Events))
		var last string
		r.oldest = addDays(r.Now.In(r.Loc).Format(time.DateOnly), -(r.Days - 1))
		var lo, hi int64 // [lo, hi): the quarter hour of last, in Unix ms
		for j, e := range r.Events {
			if e.Time < lo || e.Time >= hi {
				// Zone offsets are whole quarter hours: a quarter hour
				// never straddles midnight.
				lo = e.Time - e.Time%900_000
				hi = lo + 900_000
				last = time.UnixMilli(e.Time).In(r.Loc).Format(time.DateOnly)
			}
			r.dates[j] = last
		}
	})
	return r.dates[i]
}

func addDays(date string, n int) string {
	t, _ := time.Parse(time.DateOnly, date)
	return t.AddDate(0, 0, n).Format(time.DateOnly)
}

// midnight is when a date begins in the zone, in Unix ms.
func (r *Raw) midnight(date string) int64 {
	t, _ := time.Parse(time.DateOnly, date)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, r.Loc).UnixMilli()
}

// kept reports whether an event's day is within the history kept.
func (r *Raw) kept(i int) bool {
	d := r.date(i)
	return d >= r.oldest
}

// Dates lists the dates from one to another, inclusive.
func Dates(from, to string) []string {
	var out []string
	for d := from; d <= to; d = addDays(d, 1) {
		out = append(out, d)
	}
	return out
}

// EventSeries returns values[day index] of one (segment, event, measure).
func (r *Raw) EventSeries(in func(uint32) bool, event, measure string, from, to string) []float64 {
	ds := Dates(from, to)
	index := map[string]int{}
	for i, d := range ds {
		index[d] = i
	}
	out := make([]float64, len(ds))
	perUser := make([]map[uint32]int, len(ds))
	for i := range perUser {
		perUser[i] = map[uint32]int{}
	}
	for i, e := range r.Events {
		if e.Name != event || !r.kept(i) || !in(r.IDs[i]) {
			continue
		}
		di, ok := index[r.date(i)]
		if !ok {
			continue
		}
		perUser[di][r.IDs[i]]++
		switch {
		case measure == "total":
			out[di]++
		case len(measure) > 4 && measure[:4] == "sum:":
			if v, ok := e.Props[measure[4:]].(float64); ok {
				out[di] += v
			}
		}
	}
	for di, m := range perUser {
		switch {
		case measure == "uniques":
			out[di] = float64(len(m))
		case len(measure) > 9 && measure[:9] == "at_least:":
			var n int
			for _, c := range measure[9:] {
				n = n*10 + int(c-'0')
			}
			for _, c := range m {
				if c >= n {
					out[di]++
				}
			}
		}
	}
	return out
}

// Funnel returns how many users of the segment reached each step.
func (r *Raw) Funnel(in func(uint32) bool, steps []string, window time.Duration, strictOrder, dedup, increase bool, from, to string) []uint64 {
	lo := r.midnight(from)
	endTo := r.midnight(addDays(to, 1)) - 1
	hi := endTo + window.Milliseconds()
	type ev struct {
		t    int64
		cond int
	}
	byUser := map[uint32][]ev{}
	for i, e := range r.Events {
		u := r.IDs[i]
		if !in(u) || !r.kept(i) || e.Time < lo || e.Time > hi {
			continue
		}
		matched := false
		for c := len(steps); c >= 1; c-- { // as ClickHouse adds them: last condition first
			if e.Name == steps[c-1] && (c > 1 || e.Time <= endTo) {
				byUser[u] = append(byUser[u], ev{e.Time, c})
				matched = true
			}
		}
		if strictOrder && !matched {
			byUser[u] = append(byUser[u], ev{e.Time, 0})
		}
	}
	out := make([]uint64, len(steps))
	for _, list := range byUser {
		sort.SliceStable(list, func(i, j int) bool {
			return list[i].t < list[j].t || (list[i].t == list[j].t && list[i].cond < list[j].cond)
		})
		level := 0
		if len(list) > 0 && !strictOrder && len(steps) == 1 {
			level = 1
		} else if len(list) > 0 {
			level = chLevel(len(steps), window.Milliseconds(), strictOrder, dedup, increase, func(yield func(int64, int) bool) {
				for _, x := range list {
					if !yield(x.t, x.cond) {
						return
					}
				}
			})
		}
		for k := 0; k < level; k++ {
			out[k]++
		}
	}
	return out
}

// chLevel is ClickHouse's getEventLevel for the non-strict-once data.
func chLevel(n int, window int64, strictOrder, dedup, increase bool, list func(func(int64, int) bool)) int {
	type ts struct {
		set         bool
		first, prev int64
	}
	levels := make([]ts, n)
	top := func() int {
		for k := n; k > 0; k-- {
			if levels[k-1].set {
				return k
			}
		}
		return 0
	}
	result := -1
	firstEvent := false
	list(func(t int64, cond int) bool {
		idx := cond - 1
		if strictOrder && idx == -1 {
			if firstEvent {
				result = top()
				return false
			}
			return true
		}
		if idx == 0 {
			levels[0] = ts{true, t, t}
			firstEvent = true
		} else if dedup && levels[idx].set {
			result = top()
			return false
		} else if strictOrder && firstEvent && !levels[idx-1].set {
			for k := 0; k < n; k++ {
				if !levels[k].set {
					result = k
					return false
				}
			}
		} else if levels[idx-1].set {
			matched := t <= levels[idx-1].first+window
			if increase {
				matched = matched && levels[idx-1].prev < t
			}
			if matched {
				levels[idx] = ts{true, levels[idx-1].first, t}
				if idx+1 == n {
					result = n
					return false
				}
			}
		}
		return true
	})
	if result >= 0 {
		return result
	}
	return top()
}

// Retention returns cohort sizes and retained counts per cohort day.
func (r *Raw) Retention(in func(uint32) bool, start, ret string, from, to string, days int, recurring bool) (sizes []uint64, retained [][]uint64, cohortDays []string) {
	startDays := map[uint32]map[string]bool{}
	retDays := map[uint32]map[string]bool{}
	firstStart := map[uint32]string{}
	for i, e := range r.Events {
		u := r.IDs[i]
		if !r.kept(i) {
			continue
		}
		d := r.date(i)
		if e.Name == start {
			if startDays[u] == nil {
				startDays[u] = map[string]bool{}
			}
			startDays[u][d] = true
			if f, ok := firstStart[u]; !ok || d < f {
				firstStart[u] = d
			}
		}
		if e.Name == ret {
			if retDays[u] == nil {
				retDays[u] = map[string]bool{}
			}
			retDays[u][d] = true
		}
	}
	today := r.Now.In(r.Loc).Format(time.DateOnly)
	for _, d := range Dates(from, to) {
		if d > today {
			break
		}
		cohortDays = append(cohortDays, d)
		var size uint64
		n := 0
		for x := addDays(d, 1); x <= today && n < days; x = addDays(x, 1) {
			n++
		}
		row := make([]uint64, n)
		for u, sd := range startDays {
			if !in(u) {
				continue
			}
			if recurring && !sd[d] || !recurring && firstStart[u] != d {
				continue
			}
			size++
			for k := 1; k <= n; k++ {
				if retDays[u][addDays(d, k)] {
					row[k-1]++
				}
			}
		}
		sizes = append(sizes, size)
		retained = append(retained, row)
	}
	return sizes, retained, cohortDays
}
