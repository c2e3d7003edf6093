package engine

import (
	"fmt"
	"testing"
)

// BenchmarkInternWithANewUser interns batches of 1000 known names of 200k
// with one new name in the middle, as a catch-up's batches have while
// users are still new.
func BenchmarkInternWithANewUser(b *testing.B) {
	d := newDictionary()
	known := make([]string, 200000)
	for i := range known {
		known[i] = fmt.Sprintf("u%d", i)
	}
	ids := make([]uint32, len(known))
	d.intern(known, ids, func(uint32) {})
	batch := make([]string, 1000)
	out := make([]uint32, len(batch))
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = known[(n*7919+i*104729)%len(known)]
		}
		batch[len(batch)/2] = fmt.Sprintf("new%d", n)
		n++
		d.intern(batch, out, func(uint32) {})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/name")
}
