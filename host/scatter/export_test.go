package scatter

import (
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/ingest"
)

// RunEquivalence runs TestFourPartitionsAnswerAsOne's comparisons (one
// engine, the reference evaluators, and n partitions merged) with the n
// partitions' Parts built by wrap from the in-process ones (package
// remotepart's test reaches them over NATS), checking every user's
// memberships at one step of every.
func RunEquivalence(t *testing.T, loc *time.Location, seed uint64, n int, wrap func(testing.TB, []Part) []Part, every int) {
	runEquivalenceWith(t, loc, seed, n, wrap, every)
}

// BenchScatters returns the benchmarks' data (benchData): one engine's
// Scatter, four partitions' Scatter, and those four Parts.
func BenchScatters(b *testing.B) (one, four *Scatter, parts []Part) {
	cs := benchData(b)
	return cs[1].s, cs[4].s, cs[4].s.parts
}

// The tests of errors and large answers, with the partitions' Parts built
// by wrap (see RunEquivalence).
var (
	CannotAnswer = testCannotAnswer
	Deadline     = testDeadline
	CrossBlocks  = testCrossBlocks
)

// Cluster builds n partitions on the test rules with their Parts built by
// wrap, and returns their Scatter and a function that applies a message
// to them (split by user, as their consumers would).
func Cluster(t testing.TB, n int, clock *engine.ManualClock, wrap func(testing.TB, []Part) []Part) (*Scatter, func(*ingest.Message)) {
	c := newClusterWith(t, n, time.UTC, clock, wrap)
	return c.s, func(m *ingest.Message) { c.apply(t, m) }
}

// CodeOf and UserOf are the tests' codeOf and userOf.
var (
	CodeOf = codeOf
	UserOf = userOf
)
