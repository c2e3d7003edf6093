package scatter

import (
	"testing"
	"time"
)

// RunEquivalence runs TestFourPartitionsAnswerAsOne's comparisons (one
// engine, the reference evaluators, and n partitions merged) with the n
// partitions' Parts built by wrap from the in-process ones: package
// remotepart's test reaches them over NATS.
func RunEquivalence(t *testing.T, loc *time.Location, seed uint64, n int, wrap func(testing.TB, []Part) []Part) {
	runEquivalenceWith(t, loc, seed, n, wrap)
}

// BenchScatters returns the benchmarks' data (benchData): one engine's
// Scatter, four partitions' Scatter, and those four Parts.
func BenchScatters(b *testing.B) (one, four *Scatter, parts []Part) {
	cs := benchData(b)
	return cs[1].s, cs[4].s, cs[4].s.parts
}
