package host

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
)

// TestSupersededPartialChangesReleasePools: with two partitions, each
// rule change swaps in partition 0 but is held in partition 1 until the
// next change supersedes it there, twice in a row; then one applies in
// both. Every definition that no partition runs any more releases its
// plugin predicates: the plugin keeps one pool, for the parameters that
// run. (The second partial change's finish released nothing, since its
// new definition runs in partition 0 only, and the definition it replaced
// there, the first change's, was never released.)
func TestSupersededPartialChangesReleasePools(t *testing.T) {
	t.Parallel()
	gt, _ := amountVersions(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{}) // never closed: a held rebuild ends superseded
	var (
		mu       sync.Mutex
		holdFrom uint64 // revisions from this one on are held in partition 1
	)
	setHold := func(rev uint64) { mu.Lock(); holdFrom = rev; mu.Unlock() }
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC))
	ts := startServer(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Clock: clock,
		Partitions: 2, SnapshotInterval: -1, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		ruleRebuildHold: func(partition int, segment string, rev uint64) <-chan struct{} {
			mu.Lock()
			defer mu.Unlock()
			if partition == 1 && segment == "big_plugin" && holdFrom != 0 && rev >= holdFrom {
				return held
			}
			return nil
		}})
	rt := &ruleTest{testServer: ts, rulesFile: rulesFile, rng: rand.New(rand.NewPCG(91, 17))}
	ctx := context.Background()
	if _, err := rt.client.PushPlugin(ctx, "amount", gt, amountMan, ""); err != nil {
		t.Fatal(err)
	}
	def := func(min int) string {
		return fmt.Sprintf("id: big_plugin\ndid: {event: pay, where: {plugin: amount, params: {min: %d}}, last: 3d}\n", min)
	}
	for range 4 {
		rt.pluginBatch(t, false)
	}
	// servedIn waits until partition n serves revision rev.
	servedIn := func(n int, rev uint64) {
		t.Helper()
		waitCond(t, fmt.Sprintf("partition %d serving revision %d", n, rev), func() bool {
			_, info, err := rt.srv.parts[n].engine.Segment("big_plugin")
			return err == nil && info.Revision == rev && info.Status == "active"
		})
	}
	put := func(min int) uint64 {
		t.Helper()
		r, err := rt.client.PutRule(ctx, api.RulePutRequest{Definition: def(min)})
		if err != nil {
			t.Fatal(err)
		}
		return r.Revision
	}
	r1 := put(10)
	rt.waitServing(t, "big_plugin", r1)
	setHold(r1 + 1)
	r2 := put(20)
	servedIn(0, r2)
	r3 := put(30) // supersedes r2 in partition 1
	servedIn(0, r3)
	setHold(0)
	r4 := put(40) // supersedes r3 in partition 1; applies in both
	servedIn(0, r4)
	servedIn(1, r4)
	rt.waitServing(t, "big_plugin", r4)
	rt.pluginBatch(t, false)
	pools := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ := rt.srv.plugins.Status("amount")
		if pools = st.Pools; pools == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	if pools != 1 {
		t.Fatalf("the plugin keeps %d pools; want 1, for the parameters that run", pools)
	}
}
