package engine

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// flakyPlugins resolves every plugin to one flakyPredicate: it fails any
// batch holding an event named "boom" (as a plugin that traps on some input
// does) while boom is set, and every batch while down is set (a plugin that
// is unavailable for a while). It names itself "flaky", as the plugins
// package's predicates do.
type flakyPlugins struct{ pred *flakyPredicate }

type flakyPredicate struct {
	boom, down atomic.Bool
}

func newFlaky() flakyPlugins {
	p := &flakyPredicate{}
	p.boom.Store(true)
	return flakyPlugins{p}
}

func (f flakyPlugins) EventPredicate(rules.PluginRef) (rules.EventPredicate, error) {
	return f.pred, nil
}

func (flakyPlugins) ProfilePredicate(ref rules.PluginRef) (rules.ProfilePredicate, error) {
	return nil, errors.New("no profile predicates here")
}

func (p *flakyPredicate) PluginName() string { return "flaky" }

func (p *flakyPredicate) MatchEvents(_ context.Context, events []rules.Event, out rules.Bits) error {
	if p.down.Load() {
		return errors.New("plugin flaky: deadline exceeded")
	}
	for i, e := range events {
		if e.Name == "boom" && p.boom.Load() {
			return errors.New("plugin trapped: unreachable executed")
		}
		out.Set(i)
	}
	return nil
}

const flakyRules = `
segments:
  - {id: plugged, did: {events: [pay, boom], where: {plugin: flaky}, last: 7d}}
  - {id: reader, all: [{in_segment: plugged}]}
  - {id: payers, did: {event: pay, last: 7d}}
  - {id: not_plugged, not: {in_segment: plugged}}
`

// flakyEngine is an engine over flakyRules whose messages are kept as the
// log a rebuild reads, with the reference evaluator fed the same batches
// and the change feed recorded.
type flakyEngine struct {
	t       *testing.T
	e       *Engine
	plugins flakyPlugins
	clock   *ManualClock
	ref     *reference.Evaluator
	log     []*ingest.Message
	mu      sync.Mutex
	changes []Change
}

func newFlakyEngine(t *testing.T, cfg Config) *flakyEngine {
	t.Helper()
	f := &flakyEngine{t: t, plugins: newFlaky(), clock: NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))}
	segs, err := rules.Compile([]rules.File{{Name: "p.yaml", Data: []byte(flakyRules)}}, rules.Options{Plugins: f.plugins})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Segments, cfg.Clock, cfg.TickInterval = segs, f.clock, time.Hour
	cfg.OnChanges = func(cs []Change) {
		f.mu.Lock()
		f.changes = append(f.changes, cs...)
		f.mu.Unlock()
	}
	f.e = New(cfg)
	f.ref = reference.New(segs, time.UTC, DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	r := run(f.e)
	t.Cleanup(r.stop)
	return f
}

// apply applies a batch of one event per user, named name.
func (f *flakyEngine) apply(name string, users ...string) {
	f.t.Helper()
	var b rules.Batch
	for _, u := range users {
		b.Events = append(b.Events, rules.Event{User: u, Name: name, Time: f.clock.Now().UnixMilli()})
	}
	msg := &ingest.Message{Seq: uint64(len(f.log) + 1), Batch: b}
	f.log = append(f.log, msg)
	if err := f.e.Apply(context.Background(), msg); err != nil {
		f.t.Fatalf("a failing predicate failed the batch: %v", err)
	}
	f.ref.Apply(b, f.clock.Now())
}

// recover runs what segd's recovery loop does once a plugin reports in:
// PluginUsable, then StartRecovery and the rebuild over the kept log. It
// returns whether a rebuild ran, and when one is next due.
func (f *flakyEngine) recover(usable, newVersion bool) (bool, time.Time) {
	f.t.Helper()
	ctx := context.Background()
	var rb *Rebuild
	var next time.Time
	err := f.e.Do(ctx, func() error {
		if usable {
			f.e.PluginUsable("flaky", newVersion)
		}
		var err error
		rb, next, err = f.e.StartRecovery()
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if rb == nil {
		return false, next
	}
	if _, err := rb.Run(ctx, &sliceSource{msgs: slices.Clone(f.log)}); err != nil {
		f.t.Fatal(err)
	}
	return true, next
}

// sliceSource is a RebuildSource over messages in memory.
type sliceSource struct{ msgs []*ingest.Message }

func (s *sliceSource) Next(context.Context) (*ingest.Message, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

// info is a segment's segment.list entry.
func (f *flakyEngine) info(id string) api.SegmentInfo {
	f.t.Helper()
	for _, s := range f.e.Segments() {
		if s.ID == id {
			return s
		}
	}
	f.t.Fatalf("no segment %s", id)
	return api.SegmentInfo{}
}

// requireNotServed checks that every membership question about a stale
// segment is a 503 naming it and its state, and that a user's segments
// leave it out and say so.
func (f *flakyEngine) requireNotServed(id, state string) {
	f.t.Helper()
	e := f.e
	check := func(what string, err error) {
		f.t.Helper()
		var be *ingest.Error
		if !errors.Is(err, ErrStale) || !errors.As(err, &be) || be.Code != api.CodeUnavailable ||
			!strings.Contains(err.Error(), `"`+id+`"`) || !strings.Contains(err.Error(), "is "+state) {
			f.t.Fatalf("%s of stale %s: %v, want a 503 naming it as %s", what, id, err, state)
		}
	}
	_, err := e.IsMember("a", id)
	check("IsMember", err)
	_, err = e.IsMember("never-seen", id)
	check("IsMember of an unknown user", err)
	_, _, err = e.MemberSince("a", id)
	check("MemberSince", err)
	_, err = e.SegmentCount(id)
	check("SegmentCount", err)
	_, err = e.Members(id)
	check("Members", err)
	_, _, err = e.SegmentPage(id, 0, 10)
	check("SegmentPage", err)
	_, _, err = e.SegmentBitmaps([]string{"payers", id})
	check("SegmentBitmaps", err)
	_, err = e.SegmentBitmap(id)
	check("SegmentBitmap", err)
	if slices.Contains(e.UserSegments("a"), id) || !slices.Contains(e.UnavailableSegments(), id) {
		f.t.Fatalf("user segments %v, unavailable %v: %s is listed as served", e.UserSegments("a"), e.UnavailableSegments(), id)
	}
	info := f.info(id)
	if info.Status != state || info.Stale == nil || info.Stale.State != state || info.Error == "" {
		f.t.Fatalf("segment.list of %s: %+v (stale %+v), want %s with the error", id, info, info.Stale, state)
	}
	found := false
	for _, st := range e.Status().Stale {
		found = found || (st.Segment == id && st.State == state)
	}
	if !found {
		f.t.Fatalf("status does not list %s as %s: %+v", id, state, e.Status().Stale)
	}
}

// requireExact checks every segment against the reference over all events.
func (f *flakyEngine) requireExact() {
	f.t.Helper()
	for _, id := range []string{"plugged", "reader", "payers", "not_plugged"} {
		got, err := f.e.Members(id)
		if err != nil {
			f.t.Fatalf("%s: %v (segment.list %+v)", id, err, f.info(id))
		}
		if want := f.ref.Members(id, f.clock.Now()); !slices.Equal(got, want) {
			f.t.Fatalf("%s = %v, the reference says %v", id, got, want)
		}
		if info := f.info(id); info.Status != "active" || info.Stale != nil {
			f.t.Fatalf("%s: %+v, want active", id, info)
		}
	}
	if st := f.e.Status().Stale; len(st) != 0 {
		f.t.Fatalf("status still lists stale segments: %+v", st)
	}
}

// changesOf lists the recorded changes of a segment as "+user"/"-user".
func (f *flakyEngine) changesOf(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.changes {
		if c.Segment == id {
			if c.Enter {
				out = append(out, "+"+c.User)
			} else {
				out = append(out, "-"+c.User)
			}
		}
	}
	return out
}

// A predicate that fails a whole batch makes its segment (and those that
// read it) stale: not served, no changes published from the incomplete
// state, and every other rule keeps exact results from the same batch.
func TestFailingPredicateIsContained(t *testing.T) {
	t.Parallel()
	f := newFlakyEngine(t, Config{})
	f.apply("pay", "a")
	f.apply("boom", "b")
	f.apply("pay", "c")
	if m := members(t, f.e, "payers"); !slices.Equal(m, []string{"a", "c"}) {
		t.Fatalf("payers = %v: another rule's failure changed it", m)
	}
	f.requireNotServed("plugged", api.SegmentStale)
	f.requireNotServed("reader", api.SegmentStale)
	f.requireNotServed("not_plugged", api.SegmentStale)
	if info := f.info("plugged"); !strings.Contains(info.Error, "plugin trapped") || info.Stale.Seq != 2 ||
		!slices.Equal(info.Stale.Plugins, []string{"flaky"}) {
		t.Fatalf("plugged: %+v, stale %+v", info, info.Stale)
	}
	if info := f.info("reader"); !strings.Contains(info.Error, `reads segment "plugged"`) {
		t.Fatalf("reader: %+v", info)
	}
	// c entered nothing: the membership is frozen while stale.
	if got := f.changesOf("plugged"); !slices.Equal(got, []string{"+a"}) {
		t.Fatalf("changes of plugged = %v, want only a's, from before it went stale", got)
	}
	// b and c, new users, would have entered not_plugged from the
	// incomplete state; a was in plugged from the start.
	if got := f.changesOf("not_plugged"); len(got) != 0 {
		t.Fatalf("changes of not_plugged = %v, want none while stale", got)
	}
	if st := f.e.Status(); st.LastSeq != 3 || st.Events != 3 {
		t.Fatalf("status = %+v: no event may be lost", st)
	}
	// No sign of recovery: nothing to rebuild.
	if ran, _ := f.recover(false, false); ran {
		t.Fatal("a rebuild started with no sign the plugin works again")
	}
}

// A plugin that is down for a while and then works again: the stale
// segments are rebuilt from the log beside live ingest and served exact,
// with the changes they missed published once.
func TestStaleSegmentRecoversWhenThePluginWorksAgain(t *testing.T) {
	t.Parallel()
	f := newFlakyEngine(t, Config{})
	f.plugins.pred.boom.Store(false)
	f.apply("pay", "a")
	f.plugins.pred.down.Store(true)
	f.apply("pay", "b")
	f.apply("boom", "c")
	f.requireNotServed("plugged", api.SegmentStale)
	f.plugins.pred.down.Store(false)
	f.apply("pay", "d")
	f.requireNotServed("plugged", api.SegmentStale) // not before the rebuild
	if ran, _ := f.recover(true, false); !ran {
		t.Fatal("no rebuild once the plugin worked again")
	}
	f.requireExact()
	if got := f.changesOf("plugged"); !slices.Equal(got, []string{"+a", "+b", "+c", "+d"}) {
		t.Fatalf("changes of plugged = %v, want each member entering once", got)
	}
	f.apply("pay", "e")
	f.requireExact()
}

// A batch the plugin can never judge: each rebuild fails on it again, so
// rebuilds back off (doubling) and stop after MaxRecoveryRebuilds, with
// the state "failed" saying so; a new version that judges it recovers the
// segment exactly.
func TestDeterministicFailureBacksOffAndWaitsForANewVersion(t *testing.T) {
	t.Parallel()
	f := newFlakyEngine(t, Config{MaxRecoveryRebuilds: 2, RecoveryBackoff: time.Minute})
	f.apply("pay", "a")
	f.apply("boom", "b")
	f.apply("pay", "c")
	if ran, _ := f.recover(true, false); !ran {
		t.Fatal("no rebuild once the plugin judged a batch again")
	}
	f.requireNotServed("plugged", api.SegmentStale)
	info := f.info("plugged")
	if info.Stale.Rebuilds != 1 || info.Stale.Seq != 2 || info.Stale.NextRebuild == "" || !strings.Contains(info.Error, "plugin trapped") {
		t.Fatalf("after a failed rebuild: %+v", info.Stale)
	}
	ran, next := f.recover(true, false)
	if ran || !next.Equal(f.clock.Now().Add(time.Minute)) {
		t.Fatalf("rebuild ran %v, next at %v: want none before the back-off of a minute", ran, next)
	}
	f.clock.Advance(time.Minute)
	if ran, _ := f.recover(false, false); !ran {
		t.Fatal("no rebuild after the back-off")
	}
	f.requireNotServed("plugged", api.SegmentFailed)
	if info := f.info("plugged"); info.Stale.Rebuilds != 2 || !strings.Contains(info.Stale.Waiting, "new version") {
		t.Fatalf("after the last rebuild: %+v", info.Stale)
	}
	f.requireNotServed("reader", api.SegmentStale)
	f.clock.Advance(time.Hour)
	if ran, next := f.recover(true, false); ran || !next.IsZero() {
		t.Fatalf("rebuild ran %v, next %v: a failed segment must wait for a new version", ran, next)
	}
	f.plugins.pred.boom.Store(false) // the new version judges the batch
	if ran, _ := f.recover(true, true); !ran {
		t.Fatal("no rebuild after a new version")
	}
	f.ref = referenceOver(t, f)
	f.requireExact()
}

// referenceOver is a reference evaluator fed the whole log again (at the
// clock now), for when the predicate's answers changed.
func referenceOver(t *testing.T, f *flakyEngine) *reference.Evaluator {
	t.Helper()
	segs, err := rules.Compile([]rules.File{{Name: "p.yaml", Data: []byte(flakyRules)}}, rules.Options{Plugins: f.plugins})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	for _, m := range f.log {
		ref.Apply(m.Batch, f.clock.Now())
	}
	return ref
}

// A snapshot taken while a segment is stale does not make it exact: a new
// engine restored from it lists the segment (and those reading it) stale,
// does not serve them, and rebuilding them from the log makes them exact.
func TestSnapshotKeepsStaleSegmentsStale(t *testing.T) {
	t.Parallel()
	f := newFlakyEngine(t, Config{})
	f.apply("pay", "a")
	f.apply("boom", "b")
	f.apply("pay", "c")
	snap := snapshotOf(t, f.e)

	f.plugins.pred.boom.Store(false) // the plugin judges the batch after the restart
	segs, err := rules.Compile([]rules.File{{Name: "p.yaml", Data: []byte(flakyRules)}}, rules.Options{Plugins: f.plugins})
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Segments: segs, Clock: f.clock, TickInterval: time.Hour})
	res, err := e.Restore(snapio.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"not_plugged", "plugged", "reader"}; !slices.Equal(res.Stale, want) {
		t.Fatalf("restored: stale %v, want %v", res.Stale, want)
	}
	r := run(e)
	defer r.stop()
	g := &flakyEngine{t: t, e: e, plugins: f.plugins, clock: f.clock, log: f.log}
	g.requireNotServed("plugged", api.SegmentStale)
	rb, err := func() (rb *Rebuild, err error) {
		err = e.Do(context.Background(), func() error { rb, err = e.StartRebuild(res.Stale); return err })
		return rb, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Run(context.Background(), &sliceSource{msgs: slices.Clone(f.log)}); err != nil {
		t.Fatal(err)
	}
	g.ref = referenceOver(t, g)
	g.requireExact()
}

// A rebuild whose log cannot be read is aborted: the segments go back to
// stale and another rebuild can run after the back-off.
func TestAbortedRebuildLeavesTheSegmentStale(t *testing.T) {
	t.Parallel()
	f := newFlakyEngine(t, Config{RecoveryBackoff: time.Minute})
	f.apply("pay", "a")
	f.apply("boom", "b")
	f.plugins.pred.boom.Store(false)
	var rb *Rebuild
	if err := f.e.Do(context.Background(), func() (err error) {
		f.e.PluginUsable("flaky", false)
		rb, _, err = f.e.StartRecovery()
		return err
	}); err != nil || rb == nil {
		t.Fatalf("recovery: %v, %v", rb, err)
	}
	if err := f.e.Do(context.Background(), func() error { rb.Abort(errors.New("stream gone")); return nil }); err != nil {
		t.Fatal(err)
	}
	f.requireNotServed("plugged", api.SegmentStale)
	if info := f.info("plugged"); !strings.Contains(info.Error, "stream gone") || info.Stale.Rebuilds != 1 {
		t.Fatalf("after the abort: %+v", info.Stale)
	}
	f.clock.Advance(time.Minute)
	if ran, _ := f.recover(false, false); !ran {
		t.Fatal("no rebuild after the back-off")
	}
	f.ref = referenceOver(t, f)
	f.requireExact()
}
