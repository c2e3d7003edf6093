package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/host/internal/snapio"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// profileRules are 50 profile segments: their state is membership and
// profiles only, the part of a snapshot that is not the event rules'.
func profileRules() string {
	var sb strings.Builder
	sb.WriteString("segments:\n")
	for n := range 50 {
		switch n % 3 {
		case 0:
			fmt.Fprintf(&sb, "  - {id: p%02d, profile: age >= %d}\n", n, 15+n%30)
		case 1:
			fmt.Fprintf(&sb, "  - {id: p%02d, profile: country == \"c%d\" || vip}\n", n, n%10)
		default:
			fmt.Fprintf(&sb, "  - {id: p%02d, profile: plan != \"free\" && age < %d}\n", n, 20+n%40)
		}
	}
	return sb.String()
}

func profileOf(u int) map[string]any {
	return map[string]any{"age": float64(15 + u%50), "country": fmt.Sprintf("c%d", u%12), "vip": u%7 == 0,
		"plan": []string{"free", "pro", "team"}[u%3]}
}

// BenchmarkSnapshotMembership measures the snapshot of the state that is
// not the event rules': SEGD_BENCH_USERS users (default 1M) with a
// four-attribute profile each and 50 profile segments (memberships with
// since and history, the dictionary, the profiles). pause-s is the ingest
// pause of the capture, encode-s the encoding beside it (pause-x the
// pause as a fraction of encode: the share of the work done in the
// pause), load-s Restore.
func BenchmarkSnapshotMembership(b *testing.B) {
	users := 1_000_000
	if n := benchUsers(); n != 200_000 {
		users = n
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs, err := rules.Compile([]rules.File{{Name: "p.yaml", Data: []byte(profileRules())}}, rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour}
	e, stop := runEngineCfg(cfg)
	defer stop()
	ctx := context.Background()
	var batch rules.Batch
	seq := uint64(0)
	for u := range users {
		batch.Profiles = append(batch.Profiles, rules.ProfileUpdate{User: fmt.Sprintf("user-%07d", u), Attrs: profileOf(u)})
		if len(batch.Profiles) == 10_000 || u == users-1 {
			seq++
			if err := e.Apply(ctx, &ingest.Message{Seq: seq, Batch: batch}); err != nil {
				b.Fatal(err)
			}
			batch = rules.Batch{}
		}
	}
	var pause, encode, load time.Duration
	var size int
	for b.Loop() {
		t0 := time.Now()
		var c *Capture
		if err := e.Do(ctx, func() (err error) { c, err = e.Capture(); return err }); err != nil {
			b.Fatal(err)
		}
		pause += time.Since(t0)
		t0 = time.Now()
		w := &snapio.Writer{}
		if err := c.Encode(w); err != nil {
			b.Fatal(err)
		}
		encode += time.Since(t0)
		if err := e.Do(ctx, func() error { c.Release(); return nil }); err != nil {
			b.Fatal(err)
		}
		size = len(w.Buf)
		t0 = time.Now()
		if _, err := New(cfg).Restore(snapio.NewReader(w.Buf)); err != nil {
			b.Fatal(err)
		}
		load += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(pause.Seconds()/n, "pause-s")
	b.ReportMetric(encode.Seconds()/n, "encode-s")
	b.ReportMetric(pause.Seconds()/encode.Seconds(), "pause-x")
	b.ReportMetric(load.Seconds()/n, "load-s")
	b.ReportMetric(float64(size)/1e6, "MB")
}

func runEngineCfg(cfg Config) (*Engine, func()) {
	e := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return e, func() { cancel(); <-done }
}
