package engine

import (
	"context"
	"fmt"
	"github.com/segd/segd/rules"
	"maps"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// TestSinceArrayAgainstMap sets and removes random entries, one by one and
// in sorted batches (setSorted), with the
// containers passing from sparse to dense and back, and checks every entry
// against a map; captures taken on the way must keep seeing the state of
// their freeze, whatever the writer does after.
func TestSinceArrayAgainstMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var a idMap
	want := map[uint32]uint32{}
	type capture struct {
		f    frozenIDMap
		want map[uint32]uint32
	}
	var caps []capture
	const ids = 3*sinceLen + 100
	check := func(get func(uint32) uint32, want map[uint32]uint32, what string) {
		t.Helper()
		for u := range uint32(ids + sinceLen) {
			if g := get(u); g != want[u] {
				t.Fatalf("%s: user %d: %d, want %d", what, u, g, want[u])
			}
		}
	}
	for round := range 40 {
		// Fill toward a density that varies by round: sparse, dense, and
		// back down, so that containers change form both ways.
		density := []float64{0.01, 0.3, 0.9, 0.05, 0.6, 0}[round%6]
		for range 4 * ids {
			u := uint32(rng.IntN(ids))
			if rng.Float64() < density {
				v := 1 + rng.Uint32N(1<<31)
				a.set(u, v)
				want[u] = v
			} else {
				a.set(u, 0)
				delete(want, u)
			}
		}
		// Then sorted batches, as a step's enters and exits come: many
		// to a container merge it, a few set one by one.
		for range 8 {
			var us []uint32
			for range rng.IntN(3 * sinceLen) {
				us = append(us, uint32(rng.IntN(ids)))
			}
			slices.Sort(us)
			us = slices.Compact(us)
			v := uint32(0)
			if rng.Float64() < density {
				v = 1 + rng.Uint32N(1<<31)
			}
			a.setSorted(us, v)
			for _, u := range us {
				if v == 0 {
					delete(want, u)
				} else {
					want[u] = v
				}
			}
		}
		check(a.get, want, fmt.Sprintf("round %d", round))
		for _, c := range caps {
			check(c.f.get, c.want, fmt.Sprintf("round %d, capture", round))
		}
		if round%5 == 0 {
			caps = append(caps, capture{a.freeze(), maps.Clone(want)})
		}
		n := 0
		for _, b := range a.boxes {
			if b == nil {
				continue
			}
			if b.bits == nil && len(b.ids) != len(b.secs) {
				t.Fatalf("round %d: %d ids, %d times", round, len(b.ids), len(b.secs))
			}
			if b.bits != nil {
				ones := 0
				for _, x := range b.bits.words {
					ones += bits.OnesCount64(x)
				}
				if ones != len(b.secs) || len(b.ids) != 0 {
					t.Fatalf("round %d: %d bits set, %d times, %d ids", round, ones, len(b.secs), len(b.ids))
				}
			}
			if len(b.secs) == 0 {
				t.Fatalf("round %d: an empty container is kept", round)
			}
			n += len(b.secs)
		}
		if n != len(want) {
			t.Fatalf("round %d: %d entries counted, want %d", round, n, len(want))
		}
	}
}

// BenchmarkSinceBytes reports the heap a segment's since entries hold per
// member at 1%, 10% and 50% of 8M users, beside the dense chunked array it
// replaced (old-B/member: 4 bytes for every id up to the highest member).
func BenchmarkSinceBytes(b *testing.B) {
	const users = 1 << 23
	for _, density := range []float64{0.01, 0.1, 0.5} {
		b.Run(fmt.Sprintf("density=%v", density), func(b *testing.B) {
			var perMember, old float64
			for b.Loop() {
				rng := rand.New(rand.NewPCG(3, 4))
				// Members enter in random order, as users of a catch-up do.
				ids := make([]uint32, 0, int(density*users))
				for u := range uint32(users) {
					if rng.Float64() < density {
						ids = append(ids, u)
					}
				}
				rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				h0 := heapInuse()
				var a idMap
				for _, u := range ids {
					a.set(u, 1_700_000_000+u)
				}
				perMember = float64(heapInuse()-h0) / float64(len(ids))
				runtime.KeepAlive(&a)
				h0 = heapInuse()
				var c chunked[uint32]
				for _, u := range ids {
					c.set(u, 1_700_000_000+u)
				}
				old = float64(heapInuse()-h0) / float64(len(ids))
				runtime.KeepAlive(&c)
			}
			b.ReportMetric(perMember, "B/member")
			b.ReportMetric(old, "old-B/member")
			b.ReportMetric(perMember/old, "x-old")
		})
	}
}

// TestSinceHoldsOnlyMembers: a user who leaves a segment loses its since
// entry, so that the entries follow the members, not every user who ever
// entered; one who enters again gets the new time.
func TestSinceHoldsOnlyMembers(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	clock := NewManualClock(start)
	e := startEngine(t, `
segments:
  - id: active_24h
    did: {event: visit, last: 24h}
`, time.UTC, clock)
	var evs []rules.Event
	for u := range 3000 {
		evs = append(evs, rules.Event{User: fmt.Sprintf("u%d", u), Name: "visit", Time: start.Add(-time.Minute).UnixMilli()})
	}
	apply(t, e, 1, rules.Batch{Events: evs})
	entries := func() int {
		n := 0
		err := e.Do(context.Background(), func() error {
			for _, b := range e.segments[0].since.boxes {
				if b != nil {
					n += len(b.secs)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := entries(); n != 3000 {
		t.Fatalf("%d since entries after 3000 users entered, want 3000", n)
	}
	clock.Set(start.Add(48 * time.Hour))
	if err := e.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := members(t, e, "active_24h"); len(got) != 0 {
		t.Fatalf("%d members two days later, want 0", len(got))
	}
	if n := entries(); n != 0 {
		t.Fatalf("%d since entries once every member left, want 0", n)
	}
	apply(t, e, 2, rules.Batch{Events: []rules.Event{{User: "u7", Name: "visit", Time: clock.Now().UnixMilli()}}})
	in, since, err := e.MemberSince("u7", "active_24h")
	if err != nil || !in || !since.Equal(clock.Now().Truncate(time.Second)) {
		t.Fatalf("MemberSince(u7) = %v, %v, %v; want true since %v", in, since, err, clock.Now())
	}
	if n := entries(); n != 1 {
		t.Fatalf("%d since entries with one member, want 1", n)
	}
}
