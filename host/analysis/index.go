package analysis

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/rules"
)

// DefaultDays is how many calendar days of events the index keeps unless
// Config.Days says otherwise.
const DefaultDays = 90

// DefaultMaxEvents bounds the event-name dictionary unless Config.MaxEvents
// says otherwise: events with a name beyond it are not indexed (see
// Config.MaxEvents), so that a producer sending random names cannot
// exhaust memory.
const DefaultMaxEvents = 1 << 16

// Config configures an Index. The zero value keeps 90 days in UTC, by the
// system clock, with sums of every numeric property.
type Config struct {
	// Location is the time zone of calendar days (default UTC).
	Location *time.Location
	// Days is how many calendar days are kept, today included (default 90).
	// Older events are dropped when they arrive and when the day turns.
	Days int
	// Now tells the index the time, which decides what "today" and the
	// oldest kept day are (default time.Now).
	Now func() time.Time
	// SumProps lists the numeric event properties kept for sum:PROP
	// series. Nil keeps every numeric property; an empty non-nil slice
	// keeps none.
	SumProps []string
	// MaxEvents bounds the event-name dictionary (default
	// DefaultMaxEvents). Events with a name beyond it are not indexed:
	// counted in Stats.Dropped, the first named in Stats.FirstDropped, and
	// logged at most once a minute. The names of named predicates ("@ID")
	// do not count toward it and are always indexed, so that producers
	// sending many names cannot starve them.
	MaxEvents int
	// Logger receives the warning that the dictionary is full (default:
	// discarded).
	Logger *slog.Logger
}

// Index is the analysis index. ObserveEvents is called by one writer; the
// queries are safe from any number of goroutines at the same time.
type Index struct {
	loc      *time.Location
	days     int
	now      func() time.Time
	sumAll   bool
	sumProps map[string]bool
	max      int // Config.MaxEvents
	logger   *slog.Logger

	qmu   sync.Mutex
	queue []queued // observed, not yet applied
	// draining is set while a drainer goroutine runs (guarded by qmu);
	// taken is signalled (on qmu) each time a drain takes the queue.
	draining bool
	taken    *sync.Cond
	// capturing is set while a snapshot capture holds mu: ObserveEvents
	// then never waits for the queue to shrink.
	capturing atomic.Bool

	mu       sync.RWMutex // guards everything below
	ids      map[string]uint32
	names    []string
	cells    []map[Day]*cell // by event id
	tl       []timeline      // by dense user id
	tails    map[uint32][]entry
	firstDay []Day // by dense user id; noDay for none
	newUsers map[Day]uint64
	today    Day // the day expiry last ran for
	dc       rules.DayCache
	stats    Stats
	// published is a copy of stats for StatsNow, replaced after changes.
	published atomic.Pointer[Stats]
	// producerNames counts the names that count toward max (not "@ID");
	// logged is when a dropped event was last logged.
	producerNames int
	logged        time.Time
}

// Stats counts what the index applied.
type Stats struct {
	// Events were indexed; Expired arrived older than the oldest kept day;
	// Dropped had a name beyond the dictionary's limit (Config.MaxEvents).
	Events, Expired, Dropped uint64
	// FirstDropped describes the first dropped event of this run.
	FirstDropped string
}

// noDay marks a user without events.
const noDay = Day(math.MaxInt32)

// queued is an observed event waiting to be applied.
type queued struct {
	user  uint32
	t     int64
	name  string
	props map[string]any
}

// cell is one (event, day): who did it, how often, and the values of
// numeric properties.
type cell struct {
	users  *roaring.Bitmap
	counts counter
	total  uint64
	sums   map[string]*values
}

// values are the occurrences of one numeric property, in arrival order.
type values struct {
	users []uint32
	vals  []float64
}

// New returns an empty index.
func New(cfg Config) *Index {
	ix := &Index{
		loc:      cfg.Location,
		days:     cfg.Days,
		now:      cfg.Now,
		sumAll:   cfg.SumProps == nil,
		max:      cfg.MaxEvents,
		logger:   cfg.Logger,
		ids:      map[string]uint32{},
		tails:    map[uint32][]entry{},
		newUsers: map[Day]uint64{},
	}
	if ix.loc == nil {
		ix.loc = time.UTC
	}
	if ix.days <= 0 {
		ix.days = DefaultDays
	}
	if ix.now == nil {
		ix.now = time.Now
	}
	if ix.max <= 0 {
		ix.max = DefaultMaxEvents
	}
	if ix.logger == nil {
		ix.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SumProps != nil {
		ix.sumProps = map[string]bool{}
		for _, p := range cfg.SumProps {
			ix.sumProps[p] = true
		}
	}
	ix.dc.Loc = ix.loc
	ix.today = DayIn(ix.now(), ix.loc)
	ix.taken = sync.NewCond(&ix.qmu)
	return ix
}

// Location is the time zone of the index's calendar days.
func (ix *Index) Location() *time.Location { return ix.loc }

// Days is how many calendar days the index keeps.
func (ix *Index) Days() int { return ix.days }

// Today is the current calendar day by the index's clock.
func (ix *Index) Today() Day { return DayIn(ix.now(), ix.loc) }

// maxQueued is how many observed events may wait for the drainer before
// ObserveEvents waits for it to take them (unless a snapshot capture holds
// the index): the queue stays bounded when the index is slower than the
// engine.
const maxQueued = 1 << 13

// ObserveEvents implements the engine's EventObserver: it queues the batch
// for a drainer goroutine to apply, beside the engine's writer (one is
// started when none runs; it ends when the queue is empty). Queries apply
// what is queued before they read, so they see every observed event. It
// waits only when more than maxQueued events are queued and no snapshot
// capture holds the index, until the drainer takes them.
func (ix *Index) ObserveEvents(events []rules.Event, users []uint32) {
	ix.qmu.Lock()
	for i := range events {
		e := &events[i]
		ix.queue = append(ix.queue, queued{user: users[i], t: e.Time, name: e.Name, props: e.Props})
	}
	if !ix.draining && len(ix.queue) > 0 {
		ix.draining = true
		go ix.drainLoop()
	}
	for len(ix.queue) > maxQueued && !ix.capturing.Load() {
		ix.taken.Wait()
	}
	ix.qmu.Unlock()
}

// drainLoop applies the queue until it is empty, then ends.
func (ix *Index) drainLoop() {
	for {
		ix.mu.Lock()
		ix.drain()
		ix.mu.Unlock()
		ix.qmu.Lock()
		if len(ix.queue) == 0 {
			ix.draining = false
			ix.qmu.Unlock()
			return
		}
		ix.qmu.Unlock()
	}
}

// Sync applies every queued event. Queries call it themselves; it is
// exported for callers that measure the index.
func (ix *Index) Sync() {
	ix.qmu.Lock()
	n := len(ix.queue)
	ix.qmu.Unlock()
	if n > 0 || DayIn(ix.now(), ix.loc) != ix.todayLocked() {
		ix.mu.Lock()
		ix.drain()
		ix.mu.Unlock()
	}
}

func (ix *Index) todayLocked() Day {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.today
}

// read applies what is queued and takes the read lock.
func (ix *Index) read() {
	ix.Sync()
	ix.mu.RLock()
}

// drain applies the queue. The caller holds mu.
func (ix *Index) drain() {
	ix.qmu.Lock()
	q := ix.queue
	ix.queue = nil
	ix.taken.Broadcast()
	ix.qmu.Unlock()
	if today := DayIn(ix.now(), ix.loc); today != ix.today {
		ix.today = today
		ix.expire()
	}
	oldest := ix.oldest()
	for i := range q {
		ix.apply(&q[i], oldest)
	}
	if len(q) > 0 {
		ix.publish()
	}
}

// oldest is the oldest kept day.
func (ix *Index) oldest() Day { return ix.today - Day(ix.days) + 1 }

func (ix *Index) apply(e *queued, oldest Day) {
	day := ix.dc.DayOf(e.t)
	if day < oldest {
		ix.stats.Expired++
		return
	}
	ev, ok := ix.ids[e.name]
	if !ok {
		predicate := strings.HasPrefix(e.name, "@")
		if !predicate && ix.producerNames >= ix.max {
			ix.drop(e)
			return
		}
		if !predicate {
			ix.producerNames++
		}
		ev = uint32(len(ix.names))
		ix.ids[e.name] = ev
		ix.names = append(ix.names, e.name)
		ix.cells = append(ix.cells, map[Day]*cell{})
	}
	ix.stats.Events++
	c := ix.cells[ev][day]
	if c == nil {
		c = &cell{users: roaring.New()}
		ix.cells[ev][day] = c
	}
	u := e.user
	c.users.Add(u)
	c.counts.increment(u)
	c.total++
	for k, v := range e.props {
		if !ix.sumAll && !ix.sumProps[k] {
			continue
		}
		f, ok := number(v)
		if !ok {
			continue
		}
		if c.sums == nil {
			c.sums = map[string]*values{}
		}
		vs := c.sums[k]
		if vs == nil {
			vs = &values{}
			c.sums[k] = vs
		}
		vs.users = append(vs.users, u)
		vs.vals = append(vs.vals, f)
	}

	for int(u) >= len(ix.tl) {
		n := max(1024, len(ix.tl))
		ix.tl = append(ix.tl, make([]timeline, n)...)
		for range n {
			ix.firstDay = append(ix.firstDay, noDay)
		}
	}
	tl := &ix.tl[u]
	en := entry{t: e.t, ev: ev}
	if len(tl.data) == 0 || e.t >= tl.last {
		tl.appendEntry(en)
	} else {
		tail := insertSorted(ix.tails[u], en)
		if len(tail) >= maxTail {
			ix.merge(u, tail)
			delete(ix.tails, u)
		} else {
			ix.tails[u] = tail
		}
	}
	if day < ix.firstDay[u] {
		if ix.firstDay[u] != noDay {
			ix.newUsers[ix.firstDay[u]]--
		}
		ix.firstDay[u] = day
		ix.newUsers[day]++
	}
}

// merge folds a user's waiting entries into the timeline, dropping entries
// older than the oldest kept day.
func (ix *Index) merge(u uint32, tail []entry) {
	tl := &ix.tl[u]
	all := tl.decode(nil, math.MinInt64, math.MaxInt64)
	merged := mergeEntries(make([]entry, 0, len(all)+len(tail)), all, tail)
	tl.rebuild(merged, ix.oldest().Start(ix.loc))
}

// expire drops what is older than the oldest kept day: whole cells, and the
// old part of the timelines that have one. The caller holds mu.
func (ix *Index) expire() {
	oldest := ix.oldest()
	for _, days := range ix.cells {
		for d := range days {
			if d < oldest {
				delete(days, d)
			}
		}
	}
	cutoff := oldest.Start(ix.loc)
	for u := range ix.tl {
		tl := &ix.tl[u]
		if t, ok := tl.first(); ok && t < cutoff {
			ix.merge(uint32(u), ix.tails[uint32(u)])
			delete(ix.tails, uint32(u))
		}
	}
	for u, tail := range ix.tails {
		if len(tail) > 0 && tail[0].t < cutoff {
			ix.merge(u, tail)
			delete(ix.tails, u)
		}
	}
	// Users first seen before the oldest day stay counted as seen; their
	// first day no longer matters beyond "before".
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	}
	return 0, false
}

// cell returns the (event, day) cell, or nil.
func (ix *Index) cell(ev uint32, d Day) *cell {
	if int(ev) >= len(ix.cells) {
		return nil
	}
	return ix.cells[ev][d]
}

// eventID returns the id of an event name, if any event of that name was
// indexed.
func (ix *Index) eventID(name string) (uint32, bool) {
	id, ok := ix.ids[name]
	return id, ok
}

// entries appends user u's entries with lo <= t <= hi, in time order, to
// buf, with the waiting out-of-order ones merged in. scratch is reused.
func (ix *Index) entries(u uint32, buf, scratch []entry, lo, hi int64) ([]entry, []entry) {
	if int(u) >= len(ix.tl) {
		return buf, scratch
	}
	tail := ix.tails[u]
	if len(tail) == 0 {
		return ix.tl[u].decode(buf, lo, hi), scratch
	}
	scratch = ix.tl[u].decode(scratch[:0], lo, hi)
	lo2, _ := slices.BinarySearchFunc(tail, lo, func(e entry, t int64) int {
		if e.t < t {
			return -1
		}
		return 1
	})
	hi2, _ := slices.BinarySearchFunc(tail, hi, func(e entry, t int64) int {
		if e.t <= t {
			return -1
		}
		return 1
	})
	return mergeEntries(buf, scratch, tail[lo2:hi2]), scratch
}

// drop counts an event whose name finds the dictionary full, and logs it
// at most once a minute.
func (ix *Index) drop(e *queued) {
	ix.stats.Dropped++
	if ix.stats.FirstDropped == "" {
		ix.stats.FirstDropped = fmt.Sprintf("the event-name dictionary is full (%d names): events named %q are not indexed for analysis",
			ix.max, truncate(e.name, 64))
	}
	if now := ix.now(); ix.logged.IsZero() || now.Sub(ix.logged) >= time.Minute {
		ix.logged = now
		ix.logger.Error("analysis index: the event-name dictionary is full; events with new names are not indexed (logged at most once a minute)",
			"limit", ix.max, "name", truncate(e.name, 64), "dropped_so_far", ix.stats.Dropped)
	}
}

// truncate cuts s to n bytes at most, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}

// Stats returns the index's counters.
func (ix *Index) Stats() Stats {
	ix.read()
	defer ix.mu.RUnlock()
	return ix.stats
}

// StatsNow returns the counters as of the events applied last, without
// applying the queue or waiting for the index's lock (a snapshot holds it
// while it encodes the index): status reads them.
func (ix *Index) StatsNow() Stats {
	if st := ix.published.Load(); st != nil {
		return *st
	}
	return Stats{}
}

// publish makes the counters visible to StatsNow. The caller holds mu.
func (ix *Index) publish() {
	st := ix.stats
	ix.published.Store(&st)
}

// Memory is the index's size in bytes, by part.
type Memory struct {
	// Presence is the (event, day) bitmaps, Counts their count planes,
	// Sums the numeric property values, Timelines the per-user timelines
	// (with the out-of-order entries waiting to be merged) and PerUser the
	// fixed per-user arrays.
	Presence, Counts, Sums, Timelines, PerUser uint64
	// Users counts the users with an event, Cells the (event, day) cells.
	Users, Cells int
}

// Total is the sum of the parts.
func (m Memory) Total() uint64 { return m.Presence + m.Counts + m.Sums + m.Timelines + m.PerUser }

// Memory measures the index. It walks every structure: call it for
// reports, not on a hot path.
func (ix *Index) Memory() Memory {
	ix.read()
	defer ix.mu.RUnlock()
	var m Memory
	for _, days := range ix.cells {
		for _, c := range days {
			m.Cells++
			m.Presence += c.users.GetSizeInBytes()
			m.Counts += c.counts.size()
			for _, v := range c.sums {
				m.Sums += uint64(cap(v.users))*4 + uint64(cap(v.vals))*8
			}
		}
	}
	for i := range ix.tl {
		m.Timelines += uint64(cap(ix.tl[i].data))
	}
	for _, t := range ix.tails {
		m.Timelines += uint64(cap(t)) * 16
	}
	m.PerUser = uint64(cap(ix.tl))*32 + uint64(cap(ix.firstDay))*4
	for _, n := range ix.newUsers {
		m.Users += int(n)
	}
	return m
}
