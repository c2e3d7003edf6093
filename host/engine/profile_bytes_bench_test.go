package engine

import (
	"runtime"
	"testing"
)

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkProfileBytes measures the memory of 200,000 users' profiles
// (four attributes: a number, two strings, a bool) as the engine keeps
// them, against the baseline of the same profiles as one map per user
// (what the engine kept before), built in the same run: bytes/user and
// the ratio to the maps.
func BenchmarkProfileBytes(b *testing.B) {
	const users = 200_000
	for b.Loop() {
		before := heapAfterGC()
		maps := make([]map[string]any, users)
		for u := range maps {
			m := map[string]any{}
			for k, v := range profileOf(u) {
				m[k] = v
			}
			maps[u] = m
		}
		mapBytes := heapAfterGC() - before
		runtime.KeepAlive(maps)
		maps = nil

		before = heapAfterGC()
		p := newProfileStore()
		for u := range users {
			if err := p.merge(uint32(u), profileOf(u)); err != nil {
				b.Fatal(err)
			}
		}
		packedBytes := heapAfterGC() - before
		runtime.KeepAlive(p)
		if got := p.profile(7); got["plan"] != "pro" || got["age"] != float64(22) {
			b.Fatalf("user 7's profile reads back as %v", got)
		}
		b.ReportMetric(float64(packedBytes)/users, "bytes/user")
		b.ReportMetric(float64(mapBytes)/users, "map-bytes/user")
		b.ReportMetric(float64(packedBytes)/float64(mapBytes), "x")
	}
}
