package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

const userRules = `
segments:
  - id: checkout_3x_7d
    did: {event: checkout, count: ">= 3", last: 7d}
  - id: payers
    all:
      - did: {event: pay, aggregate: sum(amount), is: ">= 100", last: 5d}
      - any:
          - did: {event: pay, aggregate: avg(amount), is: "> 40", last: 3d}
          - not: {did: {event: page_view, aggregate: days, is: ">= 2", last: 4d}}
      - any: [{in_segment: checkout_3x_7d}, {profile: "age < 25"}]
  - id: young_men
    profile: age < 25 && gender == "male"
`

// conditions lists a rule's conditions parents first, as user.get does.
func conditions(c rules.Condition) []rules.Condition {
	var out []rules.Condition
	var walk func(c rules.Condition)
	walk = func(c rules.Condition) {
		out = append(out, c)
		switch c := c.(type) {
		case *rules.All:
			for _, k := range c.Of {
				walk(k)
			}
		case *rules.Any:
			for _, k := range c.Of {
				walk(k)
			}
		case *rules.Not:
			walk(c.Of)
		}
	}
	walk(c)
	return out
}

func sortEvents(evs []api.UserEvent) {
	slices.SortStableFunc(evs, func(a, b api.UserEvent) int {
		return cmp.Or(cmp.Compare(b.Time, a.Time), cmp.Compare(a.Event, b.Event))
	})
}

// TestUserGetAgainstReference holds user.get to the reference evaluator on
// random data: the profile, the memberships, every page of the events in a
// day range, and each condition's value and verdict for every segment.
func TestUserGetAgainstReference(t *testing.T) {
	t.Parallel()
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 21, 0, 0, 0, loc))
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(userRules), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", RulePaths: []string{rulesFile}, Location: loc,
		Clock: clock, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	segs, err := LoadRules(rules.Options{}, rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, loc, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	rng := rand.New(rand.NewPCG(17, 4))
	ctx := context.Background()
	checks := 0
	for step := range 8 {
		b := randomBatch(rng, clock.Now())
		ts.publish(t, b, fmt.Sprintf("batch-%d", step))
		ref.Apply(b, clock.Now())
		clock.Advance(time.Duration(rng.IntN(20)+1) * time.Hour)
		if err := ts.srv.Engine().Tick(ctx); err != nil {
			t.Fatal(err)
		}
		now := clock.Now()
		today := rules.DayOf(now.UnixMilli(), loc)
		for _, user := range append(ref.Users(), "never-seen") {
			from, to := today-rules.CalendarDay(rng.IntN(6)), today-rules.CalendarDay(rng.IntN(2))
			if from > to {
				from = to
			}
			// Every page, each of a random size.
			var got []api.UserEvent
			var first *api.UserGetReply
			for offset := 0; ; {
				rep, err := ts.client.User(ctx, api.UserGetRequest{User: user, From: from.String(), To: to.String(),
					Limit: rng.IntN(7) + 1, Offset: offset})
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = rep
				}
				got = append(got, rep.Events...)
				if rep.NextOffset == 0 {
					break
				}
				offset = rep.NextOffset
			}
			if first.From != from.String() || first.To != to.String() {
				t.Fatalf("user.get %s: from..to %s..%s, asked %s..%s", user, first.From, first.To, from, to)
			}
			var want []api.UserEvent
			for _, e := range ref.Events(user) {
				if d := rules.DayOf(e.Time, loc); d >= from && d <= to {
					want = append(want, api.UserEvent{Time: time.UnixMilli(e.Time).In(loc).Format(time.RFC3339Nano), Event: e.Name})
				}
			}
			if !slices.IsSortedFunc(got, func(a, b api.UserEvent) int { return cmp.Compare(b.Time, a.Time) }) {
				t.Fatalf("user.get %s: events not newest first: %v", user, got)
			}
			sortEvents(got)
			sortEvents(want)
			if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
				t.Fatalf("user.get %s %s..%s: %d events %v; reference %d %v", user, from, to, len(got), got, len(want), want)
			}
			wantProfile := ref.Profile(user)
			if wantProfile == nil {
				wantProfile = map[string]any{}
			}
			if !reflect.DeepEqual(first.Profile, wantProfile) || first.Known != (user != "never-seen") {
				t.Fatalf("user.get %s: profile %v known %v; reference %v", user, first.Profile, first.Known, wantProfile)
			}
			var wantSegs []string
			for _, s := range segs {
				if ref.Member(s.ID, user, now) {
					wantSegs = append(wantSegs, s.ID)
				}
			}
			var gotSegs []string
			for _, m := range first.Segments {
				gotSegs = append(gotSegs, m.Segment)
				if m.Since == "" {
					t.Fatalf("user.get %s: segment %s without since", user, m.Segment)
				}
			}
			if !slices.Equal(gotSegs, wantSegs) {
				t.Fatalf("user.get %s at %s: segments %v; reference %v", user, now, gotSegs, wantSegs)
			}
			// Why, for every segment.
			for _, s := range segs {
				rep, err := ts.client.User(ctx, api.UserGetRequest{User: user, Segment: s.ID})
				if err != nil {
					t.Fatal(err)
				}
				ex := rep.Explain
				member := ref.Member(s.ID, user, now)
				if ex == nil || ex.Segment != s.ID || ex.Holds != member || ex.Member != member {
					t.Fatalf("user.get %s explain %s: %+v; reference member %v", user, s.ID, ex, member)
				}
				conds := conditions(s.Condition)
				if len(ex.Conditions) != len(conds) {
					t.Fatalf("user.get %s explain %s: %d conditions, rule has %d", user, s.ID, len(ex.Conditions), len(conds))
				}
				for i, c := range conds {
					cv := ex.Conditions[i]
					if h := ref.Holds(c, user, now); cv.Holds != h {
						t.Fatalf("user.get %s explain %s: %q holds %v; reference %v (%s)", user, s.ID, cv.Condition, cv.Holds, h, cv.Text)
					}
					if d, ok := c.(*rules.Did); ok {
						x, defined := ref.DidValue(d, user, now)
						if defined != (cv.Value != nil) || (defined && math.Abs(*cv.Value-x) > 1e-9*max(1, math.Abs(x))) {
							t.Fatalf("user.get %s explain %s: %q value %v; reference %v (defined %v)", user, s.ID, cv.Text, cv.Value, x, defined)
						}
					}
					checks++
				}
			}
		}
	}
	t.Logf("%d conditions checked", checks)

	// An unknown segment is a 404; a bad limit a 400 naming it.
	_, err = ts.client.User(ctx, api.UserGetRequest{User: "u-1", Segment: "nope"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != api.CodeNotFound {
		t.Fatalf("unknown segment: %v", err)
	}
	_, err = ts.client.User(ctx, api.UserGetRequest{User: "u-1", Limit: 5000})
	if !errors.As(err, &ce) || ce.Code != api.CodeBadRequest || ce.Field != "limit" {
		t.Fatalf("limit 5000: %v", err)
	}
}
