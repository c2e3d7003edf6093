package host

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// TestEvalErrorsSameAtAnyP sends the same events to segd with one
// partition and with four and checks that eval_errors counts each item a
// predicate could not judge once, whatever P: in segment.list and
// segment.get, for an event predicate and a profile predicate (whose
// value for a user with no profile each engine works out at start, which
// is no item and must not count).
func TestEvalErrorsSameAtAnyP(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const ruleText = `
segments:
  - id: spender
    did: {event: pay, where: "props.amount > 10", last: 7d}
  - id: young
    profile: age < 30
`
	var batches [][]api.Item
	for i := range 12 {
		u := fmt.Sprintf("user-%d", i)
		at := now.Add(-time.Duration(i) * time.Hour).Format(time.RFC3339)
		items := []api.Item{
			{User: u, Event: "pay", Time: at}, // no amount: an error
			{User: u, Event: "pay", Time: at, Props: map[string]any{"amount": 20}},
		}
		if i%3 == 0 {
			items = append(items, api.Item{User: u, Profile: map[string]any{"city": "Oslo"}}) // no age: an error
		} else {
			items = append(items, api.Item{User: u, Profile: map[string]any{"age": 20 + i}})
		}
		batches = append(batches, items)
	}
	const wantSpender, wantYoung = 12, 4

	for _, p := range []int{1, 4} {
		t.Run(fmt.Sprintf("P=%d", p), func(t *testing.T) {
			t.Parallel()
			ts := startPartitionedRules(t, t.TempDir(), p, now, ruleText)
			ctx := context.Background()
			var last uint64
			for i, items := range batches {
				id := fmt.Sprintf("b%d", i)
				if i%2 == 0 || p == 1 { // mixed: every partition reads it and keeps its users
					a, err := client.PublishBatch(ctx, ts.js, "segd.events.test", items, id)
					if err != nil {
						t.Fatal(err)
					}
					last = a.Sequence
				} else {
					a, err := client.PublishPartitioned(ctx, ts.js, "segd.events.test", items, id, p)
					if err != nil {
						t.Fatal(err)
					}
					last = max(last, a.Sequence)
				}
			}
			waitAll(t, ts, last)
			segs, err := ts.client.Segments(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]uint64{}
			for _, s := range segs {
				got[s.ID] = s.EvalErrors
			}
			if got["spender"] != wantSpender || got["young"] != wantYoung {
				t.Errorf("segment.list eval_errors: spender %d, young %d; want %d and %d", got["spender"], got["young"], wantSpender, wantYoung)
			}
			for id, want := range map[string]uint64{"spender": wantSpender, "young": wantYoung} {
				d, err := ts.client.Segment(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if d.EvalErrors != want || d.LastEvalError == "" {
					t.Errorf("segment.get %s: eval_errors %d (%q); want %d", id, d.EvalErrors, d.LastEvalError, want)
				}
			}
		})
	}
}
