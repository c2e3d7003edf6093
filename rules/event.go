package rules

import (
	"context"
	"math/bits"
)

// Event is one thing a user did at a moment in event time.
type Event struct {
	// User is the producer's external user id.
	User string
	// Name is the event name, e.g. "checkout".
	Name string
	// Time is the event time in Unix milliseconds (UTC).
	Time int64
	// Props holds the event properties as decoded from JSON: float64, string,
	// bool, nil, []any or map[string]any.
	Props map[string]any
}

// ProfileUpdate merges attributes into a user's profile. A nil value removes
// the attribute.
type ProfileUpdate struct {
	User  string
	Attrs map[string]any
}

// Profile is a user's current attributes, as profile predicates see them.
type Profile struct {
	User  string
	Attrs map[string]any
}

// Bits is a fixed-size bit set with one bit per batch item, the answer of a
// Predicate. Bit i is word i/64, bit i%64 (little-endian within a word), which
// is also how the WASM plugin ABI lays out its answer.
type Bits []uint64

// NewBits returns a zeroed bit set with room for n items.
func NewBits(n int) Bits { return make(Bits, (n+63)/64) }

// Set sets bit i.
func (b Bits) Set(i int) { b[i>>6] |= 1 << (uint(i) & 63) }

// Has reports whether bit i is set.
func (b Bits) Has(i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }

// Clear zeroes every bit.
func (b Bits) Clear() { clear(b) }

// Count returns the number of set bits.
func (b Bits) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// EventPredicate judges a batch of events in one call: it sets out[i] for every
// events[i] that satisfies it and leaves the other bits alone. out has room for
// len(events) bits and is zero on entry. An error fails the whole batch; a
// predicate that cannot judge a single event (an expr runtime error on a
// missing property, say) reports a non-match for it and counts it in its
// Stats instead.
//
// Implementations: expr programs (this package) and WASM plugins (package
// plugins). A predicate may be called from several goroutines at once.
type EventPredicate interface {
	MatchEvents(ctx context.Context, events []Event, out Bits) error
}

// ProfilePredicate judges a batch of user profiles in one call, with the same
// contract as EventPredicate.
type ProfilePredicate interface {
	MatchProfiles(ctx context.Context, profiles []Profile, out Bits) error
}
