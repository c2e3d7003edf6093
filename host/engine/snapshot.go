package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/rules"
)

// stateVersion is the version of the engine's state encoding. A snapshot
// of another version is not loaded (segd replays instead). 2 and 3: did
// conditions keep columns per time bucket, sequences one arena per leaf,
// profiles are packed (3 is both; 2 was either alone, never released).
const stateVersion = 3

// Do runs fn on the writer goroutine, between two steps, and returns its
// error: fn sees the state of one stream sequence. Snapshots use it.
func (e *Engine) Do(ctx context.Context, fn func() error) error {
	return e.do(ctx, command{fn: fn, done: make(chan error, 1)})
}

// LastSeq is the last applied stream sequence. Writer only (inside Do).
func (e *Engine) LastSeq() uint64 { return e.lastSeq }

// ClockMillis is the engine's clock as of its last step, in Unix ms.
// Writer only (inside Do).
func (e *Engine) ClockMillis() int64 { return e.now }

// Fingerprint identifies the definition of a segment as the engine runs it:
// a hash of its source, of what Config.FingerprintExtra adds (plugin
// versions) and of the fingerprints of the segments it reads. A segment
// whose fingerprint differs from the one in a snapshot must be rebuilt.
func (e *Engine) Fingerprint(segment string) string {
	s, ok := e.ids()[segment]
	if !ok {
		return ""
	}
	return s.fingerprint
}

// configFingerprint covers the settings that every segment's state depends
// on: the time zone of days, the retention and the future skew.
func (e *Engine) configFingerprint() string {
	return fmt.Sprintf("v%d|%s|%d|%d", stateVersion, e.loc.String(), e.retention, e.skew.Milliseconds())
}

func (e *Engine) computeFingerprints(extra func(*rules.Segment) string) {
	for _, s := range e.order { // a segment's references come first
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00%t\x00", s.seg.ID, s.seg.Source, s.seg.Static)
		if extra != nil {
			fmt.Fprintf(h, "%s\x00", extra(s.seg))
		}
		for _, r := range s.refs {
			fmt.Fprintf(h, "%s=%s\x00", r.seg.ID, r.fingerprint)
		}
		s.fingerprint = hex.EncodeToString(h.Sum(nil)[:16])
	}
}

// Capture is the engine's state at one stream sequence, taken in a short
// pause of the writer and encoded later, while ingest goes on. The pause
// costs in segments, buckets and chunks, not in users: it shares the
// dictionary, the profiles, the memberships and the rule state (did
// buckets, sequence record chunks and arena, time-bucket bitmaps) with the
// capture, and until Release the writer copies a shared piece before
// changing it, so the capture keeps seeing the captured state.
type Capture struct {
	head   snapio.Writer
	segs   []capturedSegment
	leaves []leaf // the leaves in copy-on-write mode, for Release
	// names is the dictionary, attrNames and profiles the profiles, as of
	// the capture; shared is the profile array to unshare at Release.
	names, attrNames []string
	profiles         frozenChunks[[]byte]
	shared           *chunked[[]byte]
}

type capturedSegment struct {
	id, fingerprint string
	pieces          []piece
}

// piece is a part of a segment's encoding: bytes written in the pause, or
// a deferred encoder of cloned per-user state.
type piece struct {
	bytes []byte
	later func(w *snapio.Writer)
}

// pieceWriter collects a segment's pieces.
type pieceWriter struct {
	snapio.Writer
	pieces []piece
}

// defer ends the current bytes piece and adds a deferred one.
func (p *pieceWriter) deferTo(f func(w *snapio.Writer)) {
	p.pieces = append(p.pieces, piece{bytes: p.Buf}, piece{later: f})
	p.Buf = nil
}

func (p *pieceWriter) done() []piece { return append(p.pieces, piece{bytes: p.Buf}) }

// Capture takes the state (see the type). Writer only: call it inside
// Do, and call Release inside Do once Encode has returned.
func (e *Engine) Capture() (*Capture, error) {
	c := &Capture{}
	w := &c.head
	w.U32(stateVersion)
	w.String(e.configFingerprint())
	w.Varint(e.now)
	w.Uvarint(e.lastSeq)
	e.mu.RLock()
	stats, err := json.Marshal(e.stats)
	e.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	w.Bytes(stats)

	// The dictionary and the attribute names only grow, and a user's
	// packed profile is replaced, never changed: the capture keeps the
	// slices as they are and shares the profile chunks (copy-on-write),
	// and Encode writes them.
	n := len(e.users.names) // only this goroutine appends
	c.names = e.users.names[:n:n]
	c.attrNames = e.profiles.names[:len(e.profiles.names):len(e.profiles.names)]
	c.profiles = e.profiles.packed.share()
	c.shared = &e.profiles.packed
	// Segments are independent: capture them in parallel while the writer
	// waits (nothing mutates leaf state meanwhile).
	c.segs = make([]capturedSegment, len(e.segments))
	errs := make([]error, len(e.segments))
	parallel(len(e.segments), func(i int) {
		s := e.segments[i]
		cs := &c.segs[i]
		cs.id, cs.fingerprint = s.seg.ID, s.fingerprint
		if s.rebuilding {
			cs.fingerprint = "" // partial state: stale for the next start
		}
		var p pieceWriter
		if err := e.captureSegment(&p, s); err != nil {
			errs[i] = fmt.Errorf("segment %s: %w", s.seg.ID, err)
		}
		cs.pieces = p.done()
	})
	for _, s := range e.segments {
		c.leaves = append(c.leaves, s.leaves...)
	}
	if err := errors.Join(errs...); err != nil {
		c.Release()
		return nil, err
	}
	return c, nil
}

// Encode appends the captured state to w: dictionary, profiles, every
// segment's rule state and membership, counters, the last applied stream
// sequence and the clock, in the format Restore reads. Any goroutine,
// once. It encodes segments in parallel on all cores but one, which it
// leaves to ingest.
func (c *Capture) Encode(w *snapio.Writer) error { return c.EncodeContext(context.Background(), w) }

// EncodeContext is Encode, which gives up with ctx's error when ctx ends
// (between segments): a shutdown bounds the snapshot it writes.
func (c *Capture) EncodeContext(ctx context.Context, w *snapio.Writer) error {
	w.Buf = append(w.Buf, c.head.Buf...)
	w.Uvarint(uint64(len(c.names)))
	for _, n := range c.names {
		w.String(n)
	}
	writeProfiles(w, c.attrNames, c.profiles, len(c.names))
	parts := make([]snapio.Writer, len(c.segs))
	parallelN(len(c.segs), max(1, runtime.GOMAXPROCS(0)-1), func(i int) {
		if ctx.Err() != nil {
			return
		}
		cs := &c.segs[i]
		pw := &parts[i]
		pw.String(cs.id)
		pw.String(cs.fingerprint)
		mark := pw.Begin()
		for _, p := range cs.pieces {
			if p.later != nil {
				p.later(pw)
			} else {
				pw.Buf = append(pw.Buf, p.bytes...)
			}
		}
		pw.End(mark)
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	w.Uvarint(uint64(len(c.segs)))
	for i := range parts {
		w.Buf = append(w.Buf, parts[i].Buf...)
		parts[i].Buf = nil
	}
	return nil
}

// Release ends copy-on-write in the captured leaves. Writer only (inside
// Do), after Encode has returned (or instead of it).
func (c *Capture) Release() {
	for _, l := range c.leaves {
		switch l := l.(type) {
		case *didLeaf:
			l.release()
		case *seqLeaf:
			l.release()
		}
	}
	c.leaves = nil
	if c.shared != nil {
		c.shared.unshare()
		c.shared = nil
	}
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(int)) { parallelN(n, runtime.GOMAXPROCS(0), f) }

// parallelN runs f(0..n-1) on up to workers goroutines.
func parallelN(n, workers int, f func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// captureSegment captures a segment: its membership is taken as it is
// published (a frozen bitmap, the since array shared copy-on-write, the
// history copied) and encoded later; the leaves capture themselves.
func (e *Engine) captureSegment(w *pieceWriter, s *segmentState) error {
	e.mu.RLock()
	view := s.frozen()
	since := s.since.freeze() // the writer copies a container before changing it
	history := slices.Clone(s.history)
	updated := s.updated
	// A stale segment's state misses events: the mark makes the next start
	// rebuild it from the log before serving it (Restore lists it stale).
	var stale string
	if s.stale != nil {
		stale = s.stale.reason
	}
	e.mu.RUnlock()
	w.deferTo(func(w *snapio.Writer) {
		w.Bitmap(view)
		it := view.Iterator()
		for it.HasNext() {
			w.U32(since.get(it.Next()))
		}
		w.Uvarint(uint64(len(history)))
		for _, h := range history {
			w.Varint(int64(h.day))
			w.Uvarint(h.size)
			w.Uvarint(h.entered)
			w.Uvarint(h.left)
		}
		if updated.IsZero() {
			w.Varint(0)
		} else {
			w.Varint(updated.UnixNano())
		}
		w.String(stale)
	})

	w.Uvarint(uint64(len(s.leaves)))
	for _, l := range s.leaves {
		switch l := l.(type) {
		case *didLeaf:
			w.Byte(1)
			l.capture(w)
		case *seqLeaf:
			w.Byte(2)
			l.capture(w)
		case *profileLeaf:
			w.Byte(3)
			// A copy-on-write clone costs the container count; it is
			// encoded after the pause.
			l.members.SetCopyOnWrite(true)
			members := l.members.Clone()
			members.SetCopyOnWrite(false)
			w.deferTo(func(w *snapio.Writer) { w.Bitmap(members) })
		default:
			return fmt.Errorf("unknown leaf %T", l)
		}
	}
	return nil
}

// writeBuckets writes a timeBuckets' bitmaps (from its freeze), in time
// order.
func writeBuckets(w *snapio.Writer, buckets map[int64]*roaring.Bitmap) {
	keys := slices.Sorted(maps.Keys(buckets))
	w.Uvarint(uint64(len(keys)))
	for _, k := range keys {
		w.Varint(k)
		w.Bitmap(buckets[k])
	}
}

func readBuckets(r *snapio.Reader, tb *timeBuckets) {
	n := r.Len(2)
	tb.buckets = make(map[int64]*roaring.Bitmap, n)
	tb.last = nil
	for range n {
		k := r.Varint()
		tb.buckets[k] = r.Bitmap()
	}
}

func writeTimes(w *snapio.Writer, ts []int64) {
	w.Uvarint(uint64(len(ts)))
	var prev int64
	for _, t := range ts {
		w.Varint(t - prev)
		prev = t
	}
}

// capture writes the leaf's state to w and turns on copy-on-write (see
// Capture): the buckets of columns are shared with the capture, which
// encodes them later, and the writer changes a clone of a shared bucket.
// The interned values of a distinct are written in the pause.
func (d *didLeaf) capture(w *pieceWriter) {
	cols := slices.Clone(d.cols)
	for _, c := range cols {
		c.shared = true
	}
	w.deferTo(func(w *snapio.Writer) { writeColumns(w, cols) })
	vals := make([]string, len(d.values))
	for k, id := range d.values {
		vals[id] = k
	}
	w.Uvarint(uint64(len(vals)))
	for _, v := range vals {
		w.String(v)
	}
}

// release ends copy-on-write (Capture.Release).
func (d *didLeaf) release() {
	for _, c := range d.cols {
		c.shared = false
	}
}

// writeColumns writes buckets of columns: span, users, the count's bit
// slices, and the numbers by user in user order.
func writeColumns(w *snapio.Writer, cols []*bucketCol) {
	w.Uvarint(uint64(len(cols)))
	for _, c := range cols {
		w.Varint(c.start)
		w.Varint(c.end)
		w.Varint(int64(c.day))
		w.Bitmap(c.users)
		w.Uvarint(uint64(len(c.more)))
		for _, m := range c.more {
			w.Bitmap(m)
		}
		w.Bool(c.distinct != nil)
		if c.distinct != nil {
			pairs := c.distinct.all()
			w.Uvarint(uint64(len(pairs)))
			var prev uint64
			for _, p := range pairs {
				w.Uvarint(p - prev)
				prev = p
			}
		}
		w.Bool(c.vals != nil)
		if c.vals != nil {
			w.Buf = slices.Grow(w.Buf, 11*c.vals.len()) // a delta and a float each
			w.Uvarint(uint64(c.vals.len()))
			var prev uint32
			c.vals.each(func(u uint32, x float64) {
				w.Uvarint(uint64(u - prev))
				prev = u
				w.Float(x)
			})
		}
	}
}

// readColumns reads what writeColumns wrote.
func readColumns(r *snapio.Reader) []*bucketCol {
	n := r.Len(4)
	cols := make([]*bucketCol, 0, n)
	for range n {
		c := &bucketCol{start: r.Varint(), end: r.Varint(), day: rules.CalendarDay(r.Varint()), users: r.Bitmap()}
		nm := r.Len(1)
		for range nm {
			c.more = append(c.more, r.Bitmap())
		}
		if r.Bool() {
			np := r.Len(1)
			c.distinct = &pairColumn{pairs: make([]uint64, np)}
			var p uint64
			for i := range np {
				d := r.Uvarint()
				if (i > 0 && d == 0 || p+d < p) && r.Err == nil {
					r.Err = errors.New("values: pairs out of order")
				}
				p += d
				c.distinct.pairs[i] = p
			}
		}
		if r.Bool() {
			nv := r.Len(9)
			c.vals = &numColumn{keys: make([]uint32, nv), nums: make([]float64, nv), wide: true}
			var u uint32
			for i := range nv {
				d := uint32(r.Uvarint())
				if (i > 0 && d == 0 || u+d < u) && r.Err == nil {
					r.Err = errors.New("numbers: users out of order")
				}
				u += d
				c.vals.keys[i], c.vals.nums[i] = u, r.Float()
			}
			c.vals.narrowAll()
		}
		if r.Err != nil {
			return nil
		}
		if c.start >= c.end || (len(cols) > 0 && cols[len(cols)-1].end > c.start) {
			r.Err = fmt.Errorf("bucket [%d, %d) out of order", c.start, c.end)
			return nil
		}
		cols = append(cols, c)
	}
	return cols
}

func (d *didLeaf) read(r *snapio.Reader) {
	d.cols, d.hit = readColumns(r), 0
	nv := r.Len(1)
	d.values = make(map[string]uint32, nv)
	for i := range nv {
		d.values[r.String()] = uint32(i)
	}
	if len(d.values) != nv && r.Err == nil {
		r.Err = errors.New("distinct values: a value is written twice")
	}
}

// capture is didLeaf.capture for sequences: the capture shares the
// record chunks and the arena (seqStore.freeze) and the index's bitmaps
// (timeBuckets.freeze), and encodes them after the pause.
func (s *seqLeaf) capture(w *pieceWriter) {
	chunks, arena := s.times.freeze()
	lists := s.times.lists
	buckets := s.index.freeze()
	deadlines := slices.Clone(s.deadlines)
	w.deferTo(func(w *snapio.Writer) {
		writeSeqStore(w, lists, chunks, arena)
		writeBuckets(w, buckets)
		w.Uvarint(uint64(len(deadlines)))
		for _, d := range deadlines { // heap order is kept as is
			w.Varint(d.at)
			w.Uvarint(uint64(d.user))
		}
	})
}

func (s *seqLeaf) read(r *snapio.Reader) {
	s.times = readSeqStore(r, seqLists(s.cond))
	readBuckets(r, &s.index)
	nd := r.Len(2)
	s.deadlines = make(deadlineHeap, nd)
	for i := range s.deadlines {
		s.deadlines[i] = deadline{at: r.Varint(), user: uint32(r.Uvarint())}
	}
}

// RestoreResult says what Restore loaded.
type RestoreResult struct {
	// Seq is the last stream sequence the snapshot had applied: consume
	// from Seq+1.
	Seq uint64
	// Clock is the engine's clock in the snapshot.
	Clock time.Time
	// Stale lists the segments whose state the snapshot does not hold (new
	// rules) or holds for another definition, which are empty, and those
	// that were stale when captured (recovery.go), which keep their last
	// exact membership but are not served: all must be rebuilt from the log
	// (see StartRebuild) before they are right.
	Stale []string
	// Dropped lists segments of the snapshot that the rules no longer have.
	Dropped []string
}

// ErrIncompatible is returned by Restore for a snapshot written with
// another state version, time zone, retention or skew: no segment of it
// can be used.
var ErrIncompatible = errors.New("snapshot incompatible with this configuration")

// Restore loads a state written by Capture.Encode into a new engine, before
// Run. Segments whose fingerprint matches get their state back; the others
// are listed in RestoreResult.Stale. On an error the engine is in an
// undefined state and must be discarded.
func (e *Engine) Restore(r *snapio.Reader) (RestoreResult, error) {
	var res RestoreResult
	if v := r.U32(); v != stateVersion {
		if r.Err != nil {
			return res, r.Err
		}
		return res, fmt.Errorf("%w: state version %d, want %d", ErrIncompatible, v, stateVersion)
	}
	if cfp := r.String(); cfp != e.configFingerprint() && r.Err == nil {
		return res, fmt.Errorf("%w: written with %q, running with %q (version|zone|retention|skew)", ErrIncompatible, cfp, e.configFingerprint())
	}
	now := r.Varint()
	lastSeq := r.Uvarint()
	var stats = e.stats
	if err := json.Unmarshal(r.Bytes(), &stats); err != nil && r.Err == nil {
		return res, fmt.Errorf("status counters: %w", err)
	}
	nu := r.Len(1)
	names := r.Strings(nu)
	if r.Err != nil {
		return res, r.Err
	}
	// The dictionary's map is built while the profiles and segments are
	// read (a third of Restore's own time at a million users).
	var ids map[string]uint32
	dict := make(chan struct{})
	go func() {
		defer close(dict)
		ids = make(map[string]uint32, nu)
		for i, n := range names {
			ids[n] = uint32(i)
		}
	}()
	defer func() { <-dict }()
	profiles, err := readProfiles(r, nu)
	if err != nil {
		return res, err
	}
	e.users.mu.Lock()
	e.users.names = names
	e.users.mu.Unlock()
	e.profiles = profiles
	e.now, e.lastSeq = now, lastSeq

	found := map[string]bool{}
	type job struct {
		s   *segmentState
		sec *snapio.Reader
	}
	var jobs []job
	ns := r.Len(2)
	for range ns {
		id, fp := r.String(), r.String()
		sec := r.Section()
		if r.Err != nil {
			return res, r.Err
		}
		s, ok := e.ids()[id]
		if !ok {
			res.Dropped = append(res.Dropped, id)
			continue
		}
		if fp != s.fingerprint || found[id] {
			continue
		}
		found[id] = true
		jobs = append(jobs, job{s, sec})
	}
	if err := r.Done(); err != nil {
		return res, err
	}
	errs := make([]error, len(jobs))
	parallel(len(jobs), func(i int) {
		if err := e.readSegment(jobs[i].sec, jobs[i].s, uint32(nu)); err != nil {
			errs[i] = fmt.Errorf("segment %s: %w", jobs[i].s.seg.ID, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	<-dict
	if len(ids) != len(names) {
		return res, errors.New("dictionary: repeated user id")
	}
	e.users.mu.Lock()
	e.users.ids = ids
	e.users.mu.Unlock()
	e.mu.Lock()
	e.propagateStale()
	e.mu.Unlock()
	for _, s := range e.segments {
		if !found[s.seg.ID] || s.stale != nil {
			res.Stale = append(res.Stale, s.seg.ID)
		}
	}
	e.mu.Lock()
	e.stats = stats
	e.stats.LastSeq = lastSeq
	e.stats.Users = uint64(nu)
	e.mu.Unlock()
	res.Seq, res.Clock = lastSeq, time.UnixMilli(now)
	return res, nil
}

func (e *Engine) readSegment(r *snapio.Reader, s *segmentState, users uint32) error {
	members := r.Bitmap()
	if r.Err == nil && !members.IsEmpty() && members.Maximum() >= users {
		return fmt.Errorf("member %d beyond the %d users", members.Maximum(), users)
	}
	if n := members.GetCardinality(); n > uint64(r.Left()/4) {
		return fmt.Errorf("%d members, room for the since of %d", n, r.Left()/4)
	}
	var since idMap
	us := members.ToArray()
	secs := make([]uint32, len(us))
	for i := range us {
		secs[i] = r.U32()
	}
	since.load(us, secs)
	nh := r.Len(4)
	history := make([]historyDay, nh)
	for i := range history {
		history[i] = historyDay{day: dayIndex(r.Varint()), size: r.Uvarint(), entered: r.Uvarint(), left: r.Uvarint()}
	}
	var updated time.Time
	if ns := r.Varint(); ns != 0 {
		updated = time.Unix(0, ns)
	}
	stale := r.String()
	nl := r.Len(1)
	if r.Err == nil && nl != len(s.leaves) {
		return fmt.Errorf("%d leaves, the rule has %d", nl, len(s.leaves))
	}
	for _, l := range s.leaves {
		kind := r.Byte()
		switch l := l.(type) {
		case *didLeaf:
			if kind != 1 {
				return fmt.Errorf("leaf kind %d, want a did", kind)
			}
			l.read(r)
		case *seqLeaf:
			if kind != 2 {
				return fmt.Errorf("leaf kind %d, want a sequence", kind)
			}
			l.read(r)
		case *profileLeaf:
			if kind != 3 {
				return fmt.Errorf("leaf kind %d, want a profile", kind)
			}
			l.members = r.Bitmap()
		}
		if r.Err != nil {
			return r.Err
		}
	}
	if err := r.Done(); err != nil {
		return err
	}
	s.members, s.since, s.history, s.updated = members, since, history, updated
	s.publishMembers()
	if stale != "" {
		s.stale = &staleState{reason: stale, usable: true}
	}
	return nil
}
