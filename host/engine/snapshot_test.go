package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// running is an engine with its Run loop.
type running struct {
	e    *Engine
	stop func()
}

func run(e *Engine) running {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return running{e, func() { cancel(); <-done }}
}

// snapshotOf encodes the engine's state on its writer (capture, encode
// and release in one pause).
func snapshotOf(t testing.TB, e *Engine) []byte {
	t.Helper()
	w := &snapio.Writer{}
	err := e.Do(context.Background(), func() error {
		c, err := e.Capture()
		if err != nil {
			return err
		}
		defer c.Release()
		return c.Encode(w)
	})
	if err != nil {
		t.Fatal(err)
	}
	return w.Buf
}

// TestSnapshotRoundTripAgainstReference runs the randomized comparison with
// the reference evaluator, but every few steps the engine is snapshotted
// and replaced by a new engine restored from the snapshot: membership must
// stay exact, the restored engine must encode to the same bytes, and it
// must go on exactly as the original would (windows, deadlines, counters).
func TestSnapshotRoundTripAgainstReference(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "America/New_York"} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", zone, seed), func(t *testing.T) {
				t.Parallel()
				loc, _ := time.LoadLocation(zone)
				runSnapshotRandomized(t, loc, seed)
			})
		}
	}
}

func runSnapshotRandomized(t *testing.T, loc *time.Location, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	cfg, clock := randomConfig(t, loc)
	segs := cfg.Segments
	// twin is never restored: the restored engine must match it byte for
	// byte after every step.
	cur, twin := run(New(cfg)), run(New(cfg))
	defer func() { cur.stop(); twin.stop() }()
	ref := reference.New(segs, loc, DefaultMaxFutureSkew, testRetentionDays)
	ctx := context.Background()
	names := []string{"checkout", "pay", "page_view", "search", "other"}
	terms := []string{"shoes", "bags", "hats"}
	seq := uint64(0)
	restores := 0
	for step := 0; step < 60; step++ {
		clock.Advance(time.Duration(rng.IntN(36*60)+1) * time.Minute)
		now := clock.Now()
		msg := &ingest.Message{}
		switch rng.IntN(8) {
		case 0, 1:
			for _, r := range []running{cur, twin} {
				if err := r.e.Tick(ctx); err != nil {
					t.Fatal(err)
				}
			}
		case 2:
			users := []string{fmt.Sprintf("u%d", rng.IntN(45)), fmt.Sprintf("u%d", rng.IntN(45))}
			msg.Upload = &ingest.StaticUpload{Segment: "beta", Users: users, Replace: rng.IntN(2) == 0}
			ref.Upload("beta", users, msg.Upload.Replace)
		default:
			msg.Batch = randomEvents(rng, now, names, terms)
			ref.Apply(msg.Batch, now)
		}
		if msg.Upload != nil || len(msg.Batch.Events)+len(msg.Batch.Profiles) > 0 {
			seq++
			msg.Seq = seq
			for _, r := range []running{cur, twin} {
				m := *msg
				if err := r.e.Apply(ctx, &m); err != nil {
					t.Fatal(err)
				}
			}
		}
		if step%3 == 2 {
			data := snapshotOf(t, cur.e)
			cur.stop()
			e := New(cfg)
			res, err := e.Restore(snapio.NewReader(data))
			if err != nil {
				t.Fatalf("step %d: restore: %v", step, err)
			}
			if res.Seq != seq || len(res.Stale) != 0 || len(res.Dropped) != 0 {
				t.Fatalf("step %d: restore = %+v, want seq %d and nothing stale", step, res, seq)
			}
			cur = run(e)
			restores++
			if again := snapshotOf(t, e); !bytes.Equal(again, data) {
				t.Fatalf("step %d: the restored engine encodes to %d other bytes (was %d)", step, len(again), len(data))
			}
		}
		if a, b := snapshotOf(t, cur.e), snapshotOf(t, twin.e); !bytes.Equal(a, b) {
			t.Fatalf("step %d: the restored engine's state differs from the one never restored", step)
		}
		for _, s := range segs {
			want := ref.Members(s.ID, now)
			if got := members(t, cur.e, s.ID); !slices.Equal(got, want) {
				t.Fatalf("step %d: segment %s\n got %v\nwant %v", step, s.ID, got, want)
			}
		}
		if a, b := cur.e.Status(), twin.e.Status(); !reflect.DeepEqual(a, b) {
			t.Fatalf("step %d: status\n got %+v\nwant %+v", step, a, b)
		}
	}
	if restores < 10 {
		t.Fatalf("only %d restores", restores)
	}
}

func TestRestoreRejectsDamageAndOtherConfigurations(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs := compileRandomRules(t)
	cfg := Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour, RetentionDays: testRetentionDays}
	r := run(New(cfg))
	rng := rand.New(rand.NewPCG(1, 1))
	for seq := uint64(1); seq <= 5; seq++ {
		apply(t, r.e, seq, randomEvents(rng, now, []string{"checkout", "pay", "page_view", "search"}, []string{"a", "b"}))
	}
	data := snapshotOf(t, r.e)
	r.stop()

	// Another time zone: nothing can be used.
	other := cfg
	other.Location, _ = time.LoadLocation("Asia/Shanghai")
	if _, err := New(other).Restore(snapio.NewReader(data)); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("another zone: err = %v, want ErrIncompatible", err)
	}
	// Truncations never load (nor panic).
	for _, n := range []int{0, 3, len(data) / 2, len(data) - 1} {
		if _, err := New(cfg).Restore(snapio.NewReader(data[:n])); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	// Random damage may decode (the file checksum is what catches it), but
	// must never panic.
	for i := range 200 {
		bad := slices.Clone(data)
		bad[rng.IntN(len(bad))] ^= byte(1 + i%255)
		_, _ = New(cfg).Restore(snapio.NewReader(bad))
	}
	// A changed rule is stale; the others load.
	changed := randomRules + "  - id: extra\n    did: {event: pay, last: 2d}\n"
	segs2, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(
		bytes.ReplaceAll([]byte(changed), []byte(`count: ">= 3", last: 7d`), []byte(`count: ">= 4", last: 7d`)))}},
		rules.Options{MaxWindowDays: testRetentionDays})
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := cfg
	cfg2.Segments = segs2
	res, err := New(cfg2).Restore(snapio.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"checkout_3x_7d", "extra"}; !slices.Equal(res.Stale, want) {
		t.Fatalf("stale = %v, want %v", res.Stale, want)
	}
}

// TestCaptureWhileIngesting takes snapshots the way segd does, capturing
// in a pause and encoding while batches and ticks go on: the encoding must
// be byte for byte the state at the capture (that of a twin engine stopped
// there), and copy-on-write must leave the live state exactly as if no
// snapshot had been taken.
func TestCaptureWhileIngesting(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "Asia/Shanghai"} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", zone, seed), func(t *testing.T) {
				t.Parallel()
				loc, _ := time.LoadLocation(zone)
				runCaptureWhileIngesting(t, loc, seed)
			})
		}
	}
}

func runCaptureWhileIngesting(t *testing.T, loc *time.Location, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	cfg, clock := randomConfig(t, loc)
	segs := cfg.Segments
	cur, twin := run(New(cfg)), run(New(cfg))
	defer func() { cur.stop(); twin.stop() }()
	ctx := context.Background()
	names := []string{"checkout", "pay", "page_view", "search", "other"}
	terms := []string{"shoes", "bags", "hats"}
	seq := uint64(0)
	// step moves the clock and feeds both engines the same batch or tick.
	step := func() {
		clock.Advance(time.Duration(rng.IntN(12*60)+1) * time.Minute)
		if rng.IntN(4) == 0 {
			for _, r := range []running{cur, twin} {
				if err := r.e.Tick(ctx); err != nil {
					t.Error(err)
				}
			}
			return
		}
		seq++
		b := randomEvents(rng, clock.Now(), names, terms)
		for _, r := range []running{cur, twin} {
			if err := r.e.Apply(ctx, &ingest.Message{Seq: seq, Batch: b}); err != nil {
				t.Error(err)
			}
		}
	}
	for range 25 {
		step()
	}
	for round := range 4 {
		want := snapshotOf(t, twin.e)
		// Readers go on during the capture: the capture must not change
		// what they read (the race detector sees it if it does).
		stopReading := make(chan struct{})
		reading := make(chan struct{})
		go func() {
			defer close(reading)
			for {
				select {
				case <-stopReading:
					return
				default:
				}
				for _, s := range segs {
					_, _ = cur.e.SegmentCount(s.ID)
				}
			}
		}()
		var c *Capture
		err := cur.e.Do(ctx, func() (err error) { c, err = cur.e.Capture(); return err })
		close(stopReading)
		<-reading
		if err != nil {
			t.Fatal(err)
		}
		encoded := make(chan []byte)
		go func() {
			w := &snapio.Writer{}
			if err := c.Encode(w); err != nil {
				t.Error(err)
			}
			encoded <- w.Buf
		}()
		for range 15 { // ingest goes on while the capture is encoded
			step()
		}
		got := <-encoded
		if err := cur.e.Do(ctx, func() error { c.Release(); return nil }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: the capture encodes to %d bytes that differ from the state at capture time (%d bytes)", round, len(got), len(want))
		}
		for range 10 {
			step()
		}
		if a, b := snapshotOf(t, cur.e), snapshotOf(t, twin.e); !bytes.Equal(a, b) {
			t.Fatalf("round %d: after the capture the live state differs from the twin's", round)
		}
		for _, s := range segs {
			if a, b := members(t, cur.e, s.ID), members(t, twin.e, s.ID); !slices.Equal(a, b) {
				t.Fatalf("round %d: segment %s: %v, twin %v", round, s.ID, a, b)
			}
		}
	}
}

// TestSeqStoreRoundTripAndOrder reads back what writeSeqStore wrote (the
// same lists per user), and rejects users repeated or out of order, which
// the bulk reader relies on instead of a lookup per user.
func TestSeqStoreRoundTripAndOrder(t *testing.T) {
	t.Parallel()
	st := newSeqStore(3)
	rng := rand.New(rand.NewPCG(3, 3))
	for range 5000 {
		st.add(uint32(rng.IntN(700)), rng.IntN(3), int64(rng.IntN(1e6)))
	}
	chunks, arena := st.freeze()
	w := &snapio.Writer{}
	writeSeqStore(w, 3, chunks, arena)
	r := snapio.NewReader(w.Buf)
	got := readSeqStore(r, 3)
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
	if got.records != st.records {
		t.Fatalf("%d users read, %d written", got.records, st.records)
	}
	for u := range uint32(700) {
		i, wrote := st.lookup(u)
		j, ok := got.lookup(u)
		if ok != wrote {
			t.Fatalf("user %d: written %v, read %v", u, wrote, ok)
		}
		if !ok {
			continue
		}
		for k := range 3 {
			if a, b := st.list(*st.rec(i), k), got.list(*got.rec(j), k); !slices.Equal(a, b) {
				t.Fatalf("user %d list %d: read %v, wrote %v", u, k, b, a)
			}
		}
	}
	again := &snapio.Writer{}
	c2, a2 := got.freeze()
	writeSeqStore(again, 3, c2, a2)
	if !bytes.Equal(again.Buf, w.Buf) {
		t.Fatal("the store read back encodes to other bytes")
	}
	for _, users := range [][]uint64{{5, 5}, {6, 5}} {
		w := &snapio.Writer{}
		w.Uvarint(uint64(len(users)))
		for _, u := range users {
			w.Uvarint(u)
			for range 3 {
				w.Uvarint(1)
				w.Varint(100)
			}
		}
		r := snapio.NewReader(w.Buf)
		readSeqStore(r, 3)
		if r.Err == nil {
			t.Fatalf("users %v: read without an error", users)
		}
	}
}

// FuzzRestore restores damaged snapshots of the random rules' state
// (columns of every aggregate, sequence arenas, since and membership
// bitmaps): any input either loads or is refused with an error, never a
// panic. A loaded one must encode again without a panic too.
func FuzzRestore(f *testing.F) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs := compileRandomRules(f)
	cfg := Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour, RetentionDays: testRetentionDays}
	r := run(New(cfg))
	rng := rand.New(rand.NewPCG(2, 2))
	for seq := uint64(1); seq <= 3; seq++ {
		if err := r.e.Apply(context.Background(), &ingest.Message{Seq: seq,
			Batch: randomEvents(rng, now, []string{"checkout", "pay", "page_view", "search"}, []string{"a", "b"})}); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(snapshotOf(f, r.e))
	r.stop()
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(cfg)
		if _, err := e.Restore(snapio.NewReader(data)); err != nil {
			return
		}
		w := &snapio.Writer{}
		c, err := e.Capture()
		if err != nil {
			return
		}
		defer c.Release()
		_ = c.Encode(w)
	})
}
