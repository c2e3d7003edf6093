package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// BenchmarkMemberLookup compares, in the same run over the same engine (100
// rules, 10,000 users), the membership reads behind member.check and
// member.segments before the membership contract (MemberSince,
// UserMemberships) with MemberView, which also reads each segment's state
// and the sequence and clock of the last step under the same lock.
func BenchmarkMemberLookup(b *testing.B) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e, stop := runEngine(b, hundredRules(), NewManualClock(now))
	defer stop()
	var batch rules.Batch
	for u := range 10000 {
		for n := range 3 {
			batch.Events = append(batch.Events, rules.Event{User: fmt.Sprintf("u%d", u), Name: fmt.Sprintf("e%02d", (u+n)%20),
				Time: now.Add(-time.Duration(n) * time.Hour).UnixMilli(), Props: map[string]any{"v": float64(u % 50)}})
		}
	}
	if err := e.Apply(context.Background(), &ingest.Message{Seq: 1, Batch: batch}); err != nil {
		b.Fatal(err)
	}
	if n := len(e.UserMemberships("u7")); n == 0 {
		b.Fatal("u7 is in no segment: the data does not exercise the lookups")
	}
	one := []string{"c07"}
	for _, bc := range []struct {
		name string
		fn   func(user string)
	}{
		{"check/before=MemberSince", func(u string) { _, _, _ = e.MemberSince(u, "c07") }},
		{"check/after=MemberView", func(u string) { _ = e.MemberView(u, one) }},
		{"segments/before=UserMemberships", func(u string) { _ = e.UserMemberships(u) }},
		{"segments/after=MemberView", func(u string) { _ = e.MemberView(u, nil) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				bc.fn(users[i%len(users)])
			}
		})
	}
}

var users = func() []string {
	out := make([]string, 1024)
	for i := range out {
		out[i] = fmt.Sprintf("u%d", i*7)
	}
	return out
}()
