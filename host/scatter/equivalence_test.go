package scatter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/analysisref"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
	"github.com/segd/segd/setexpr"
)

// TestFourPartitionsAnswerAsOne is issue 14's "on one host, P = 1 and
// P = 4 give identical answers on the randomized rule tests": the same
// randomized stream goes to one engine and, split by user, to four; at
// checkpoints across hour and day boundaries (in two time zones, one
// crossing the end of daylight saving time) every membership, count,
// list, page walk, set-algebra result, history, status count, user.get
// and analysis of the merged four equals the one engine's, and those the
// reference evaluators know equal theirs.
func TestFourPartitionsAnswerAsOne(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "America/New_York"} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", zone, seed), func(t *testing.T) {
				t.Parallel()
				loc, err := time.LoadLocation(zone)
				if err != nil {
					t.Fatal(err)
				}
				runEquivalence(t, loc, seed, 4)
			})
		}
	}
}

func runEquivalence(t *testing.T, loc *time.Location, seed uint64, n int) {
	runEquivalenceWith(t, loc, seed, n, nil, 1)
}

// runEquivalenceWith is runEquivalence whose n partitions are reached
// through wrap (wrapParts), checking every user's memberships at one step
// of every (the pages, sets and analyses at the same steps as always).
func runEquivalenceWith(t *testing.T, loc *time.Location, seed uint64, n int, wrap wrapParts, every int) {
	rng := rand.New(rand.NewPCG(seed, 14))
	// Just before the end of daylight saving time in New York (Nov 1).
	clock := engine.NewManualClock(time.Date(2026, 10, 28, 22, 0, 0, 0, loc))
	one, many := newCluster(t, 1, loc, clock), newClusterWith(t, n, loc, clock, wrap)
	segs := compileTestRules(t)
	ref := reference.New(segs, loc, engine.DefaultMaxFutureSkew, testRetentionDays)
	var accepted []rules.Event // the events the engines keep, in stream order
	nonEmpty := map[string]bool{}
	for step := range 60 {
		clock.Advance(time.Duration(rng.IntN(30*60)+1) * time.Minute)
		now := clock.Now()
		switch rng.IntN(8) {
		case 0:
			one.tick(t)
			many.tick(t)
		case 1:
			users := []string{fmt.Sprintf("u%d", rng.IntN(testUsers)), fmt.Sprintf("u%d", rng.IntN(testUsers)), fmt.Sprintf("u%d", rng.IntN(testUsers))}
			msg := &ingest.Message{Upload: &ingest.StaticUpload{Segment: "beta", Users: users, Replace: rng.IntN(3) == 0}}
			ref.Upload("beta", users, msg.Upload.Replace)
			one.apply(t, msg)
			many.apply(t, msg)
		default:
			msg := &ingest.Message{Batch: randomBatch(rng, now)}
			ref.Apply(msg.Batch, now)
			accepted = append(accepted, acceptedEvents(msg.Batch.Events, now, loc)...)
			one.apply(t, msg)
			many.apply(t, msg)
		}
		// A partition that the message had nothing for has not looked at
		// the clock: its engine's Run does every TickInterval, the test
		// does it now, so that every window has moved to now.
		many.tick(t)
		at := fmt.Sprintf("step %d at %s", step, now.Format(time.RFC3339))
		if step%every == every-1 {
			checkMembership(t, at, one.s, many.s, ref, segs, now, nonEmpty)
		} else {
			checkCounts(t, at, one.s, many.s, ref, segs, now, nonEmpty)
		}
		if step%3 == 2 {
			checkPagesAndSets(t, at, rng, one.s, many.s, ref, segs, now)
		}
		if step%6 == 5 {
			checkAnalyses(t, at, rng, one, many, accepted, now, loc)
		}
	}
	for _, s := range segs {
		if !nonEmpty[s.ID] {
			t.Errorf("segment %s was empty at every checkpoint: the stream does not exercise it", s.ID)
		}
	}
}

// acceptedEvents keeps the events an engine accepts when its clock reads
// now (the reference evaluator's rule): not beyond the allowed skew, not
// older than the retention.
func acceptedEvents(evs []rules.Event, now time.Time, loc *time.Location) []rules.Event {
	date := func(ms int64) int {
		y, m, d := time.UnixMilli(ms).In(loc).Date()
		return int(time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Unix() / 86400)
	}
	var out []rules.Event
	for _, ev := range evs {
		if time.UnixMilli(ev.Time).Sub(now) > engine.DefaultMaxFutureSkew || date(now.UnixMilli())-date(ev.Time) >= testRetentionDays {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// checkCounts compares the segments' sizes (checkMembership does it too).
func checkCounts(t *testing.T, at string, one, many *Scatter, ref *reference.Evaluator, segs []*rules.Segment, now time.Time, nonEmpty map[string]bool) {
	t.Helper()
	for _, s := range segs {
		want := ref.Members(s.ID, now)
		n1, err1 := one.SegmentCount(s.ID)
		n4, err4 := many.SegmentCount(s.ID)
		if err1 != nil || err4 != nil || n1 != uint64(len(want)) || n4 != n1 {
			t.Fatalf("%s: segment %s count: one %d (%v), %d partitions %d (%v), reference %d", at, s.ID, n1, err1, many.Partitions(), n4, err4, len(want))
		}
		nonEmpty[s.ID] = nonEmpty[s.ID] || len(want) > 0
	}
}

func checkMembership(t *testing.T, at string, one, many *Scatter, ref *reference.Evaluator, segs []*rules.Segment, now time.Time, nonEmpty map[string]bool) {
	t.Helper()
	checkCounts(t, at, one, many, ref, segs, now, nonEmpty)
	if got, want := withoutEvalErrors(many.Segments()...), withoutEvalErrors(one.Segments()...); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: segment.list\n got %+v\nwant %+v", at, got, want)
	}
	for _, s := range segs {
		d1, err1 := one.SegmentDetail(s.ID)
		d4, err4 := many.SegmentDetail(s.ID)
		d1.SegmentInfo, d4.SegmentInfo = withoutEvalErrors(d1.SegmentInfo)[0], withoutEvalErrors(d4.SegmentInfo)[0]
		if err1 != nil || err4 != nil || !reflect.DeepEqual(d1, d4) {
			t.Fatalf("%s: segment.get %s\n got %+v (%v)\nwant %+v (%v)", at, s.ID, d4, err4, d1, err1)
		}
	}
	for u := range testUsers + 11 { // u70 is never seen
		user := fmt.Sprintf("u%d", u)
		if got, want := many.UserMemberships(user), one.UserMemberships(user); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %s memberships\n got %v\nwant %v", at, user, got, want)
		}
		if got, want := many.UserSegments(user), one.UserSegments(user); !slices.Equal(got, want) {
			t.Fatalf("%s: %s segments\n got %v\nwant %v", at, user, got, want)
		}
		v1, v4 := one.MemberView(user, nil), many.MemberView(user, nil)
		v1.AsOf, v4.AsOf = api.AsOf{}, api.AsOf{} // each partition's own point of the log
		if !reflect.DeepEqual(v1, v4) {
			t.Fatalf("%s: %s member view\n got %+v\nwant %+v", at, user, v4, v1)
		}
		for _, s := range segs {
			in, since, err := many.MemberSince(user, s.ID)
			in1, since1, err1 := one.MemberSince(user, s.ID)
			isIn, errIs := many.IsMember(user, s.ID)
			if err != nil || err1 != nil || errIs != nil || in != in1 || isIn != in || !since.Equal(since1) || in != ref.Member(s.ID, user, now) {
				t.Fatalf("%s: %s in %s: %v since %v (%v), one engine %v since %v (%v), reference %v",
					at, user, s.ID, in, since, err, in1, since1, err1, ref.Member(s.ID, user, now))
			}
		}
	}
	st1, st4 := one.Status(), many.Status()
	if st4.Users != st1.Users || st4.Users != uint64(len(ref.Users())) || st4.Events != st1.Events || st4.Profiles != st1.Profiles ||
		st4.Expired != st1.Expired || st4.TooNew != st1.TooNew || st4.Ready != st1.Ready || len(st4.Partitions) != many.Partitions() {
		t.Fatalf("%s: status\n got %+v\nwant %+v", at, st4, st1)
	}
}

// userNames is s.UserNames, failing t on an error.
func userNames(t testing.TB, s *Scatter, ids []uint32) []string {
	t.Helper()
	names, err := s.UserNames(ids)
	if err != nil {
		t.Fatalf("names of %d ids: %v", len(ids), err)
	}
	return names
}

// withoutEvalErrors leaves out the counts of predicate evaluation errors:
// they count evaluations, which are not the same work in one engine and in
// four (each engine judges some predicates on its own, such as on an empty
// profile), not answers.
func withoutEvalErrors(infos ...api.SegmentInfo) []api.SegmentInfo {
	out := slices.Clone(infos)
	for i := range out {
		out[i].EvalErrors, out[i].LastEvalError = 0, ""
	}
	return out
}

// testExprs are set algebra over the test rules, with negation at the top
// and inside.
var testExprs = []string{"!beta", "young_men & !checkout_3x_7d", "ever_searched | no_pay_3d - young_men",
	"!(no_city | young_men)", "!no_pay_3d & !beta | converted", "beta"}

func checkPagesAndSets(t *testing.T, at string, rng *rand.Rand, one, many *Scatter, ref *reference.Evaluator, segs []*rules.Segment, now time.Time) {
	t.Helper()
	n := many.Partitions()
	for _, s := range segs {
		want := ref.Members(s.ID, now)
		// A page walk with small pages crosses partitions and blocks.
		limit := 1 + rng.IntN(7)
		var got []string
		var last uint32
		from, pages := uint32(0), 0
		for {
			ids, more, err := many.SegmentPage(s.ID, from, limit)
			if err != nil {
				t.Fatalf("%s: %s page from %d: %v", at, s.ID, from, err)
			}
			if len(ids) > limit || (more && len(ids) < limit) {
				t.Fatalf("%s: %s page from %d limit %d: %d ids, more %v", at, s.ID, from, limit, len(ids), more)
			}
			names := userNames(t, many, ids)
			for i, id := range ids {
				if (len(got) > 0 || i > 0) && id <= last {
					t.Fatalf("%s: %s page walk: id %d after %d", at, s.ID, id, last)
				}
				last = id
				if _, p := Split(id, n); p != ingest.Partition(names[i], n) {
					t.Fatalf("%s: global id %d names %s of partition %d in partition %d", at, id, names[i], ingest.Partition(names[i], n), p)
				}
			}
			got = append(got, names...)
			pages++
			if !more || len(ids) == 0 {
				break
			}
			from = ids[len(ids)-1] + 1
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %s page walk (limit %d, %d pages)\n got %v\nwant %v", at, s.ID, limit, pages, got, want)
		}
	}
	// Exports: the bitmaps of global ids name the members.
	names := make([]string, len(segs))
	for i, s := range segs {
		names[i] = s.ID
	}
	bms, _, err := many.SegmentBitmaps(names)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		got := userNames(t, many, bms[i].ToArray())
		slices.Sort(got)
		if want := ref.Members(s.ID, now); !slices.Equal(got, want) {
			t.Fatalf("%s: %s export\n got %v\nwant %v", at, s.ID, got, want)
		}
	}
	// Set algebra: the merged query equals one engine's and, for !beta,
	// the reference's.
	ctx := context.Background()
	for _, src := range testExprs {
		q, err := setexpr.Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		res4, err := many.SegmentQuery(ctx, q)
		if err != nil {
			t.Fatalf("%s: %s: %v", at, src, err)
		}
		bms, universe, err := one.SegmentBitmaps(q.Names())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*roaring.Bitmap{}
		for i, name := range q.Names() {
			m[name] = bms[i]
		}
		res1, err := q.Eval(ctx, m, uint64(universe))
		if err != nil {
			t.Fatal(err)
		}
		got, want := userNames(t, many, res4.ToArray()), userNames(t, one, res1.ToArray())
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %s\n got %v\nwant %v", at, src, got, want)
		}
		if src == "!beta" {
			var notBeta []string
			for _, u := range ref.Users() {
				if !ref.Member("beta", u, now) {
					notBeta = append(notBeta, u)
				}
			}
			if !slices.Equal(got, notBeta) {
				t.Fatalf("%s: !beta\n got %v\nwant %v (reference)", at, got, notBeta)
			}
		}
	}
	// History across the last days.
	for _, s := range segs {
		from := now.AddDate(0, 0, -rng.IntN(10))
		h1, err1 := one.History(s.ID, from, now.AddDate(0, 0, 1))
		h4, err4 := many.History(s.ID, from, now.AddDate(0, 0, 1))
		if err1 != nil || err4 != nil || !reflect.DeepEqual(h1, h4) || len(h4) == 0 {
			t.Fatalf("%s: %s history\n got %+v (%v)\nwant %+v (%v)", at, s.ID, h4, err4, h1, err1)
		}
		if got, want := many.HistoryStart(s.ID), one.HistoryStart(s.ID); got != want {
			t.Fatalf("%s: %s history start %q, want %q", at, s.ID, got, want)
		}
	}
}

func checkAnalyses(t *testing.T, at string, rng *rand.Rand, one, many *cluster, accepted []rules.Event, now time.Time, loc *time.Location) {
	t.Helper()
	ctx := context.Background()
	e1 := one.engines[0]
	ids := make([]uint32, len(accepted))
	for i, ev := range accepted {
		id, ok := e1.UserID(ev.User)
		if !ok {
			t.Fatalf("user %s unknown to the engine", ev.User)
		}
		ids[i] = id
	}
	raw := &analysisref.Raw{Events: accepted, IDs: ids, Loc: loc, Now: now, Days: testIndexDays}
	segNames := []string{"checkout_3x_7d", "young_men", "beta", "no_pay_3d"}
	in := map[string]func(uint32) bool{api.AllUsers: func(uint32) bool { return true }}
	for _, s := range segNames {
		bm, err := e1.SegmentBitmap(s)
		if err != nil {
			t.Fatal(err)
		}
		in[s] = bm.Contains
	}
	today := now.In(loc).Format(time.DateOnly)
	day := func(back int) string { return now.In(loc).AddDate(0, 0, -back).Format(time.DateOnly) }
	from, to := day(3+rng.IntN(12)), day(rng.IntN(3)-1) // to is sometimes tomorrow
	ranges := [][2]string{{from, to}, {"", ""}, {day(8), ""}}

	for _, rg := range ranges {
		r := &api.AnalysisEventsRequest{Events: []string{"checkout", "pay", "page_view", "never"}, Segments: segNames,
			From: rg[0], To: rg[1], Measures: []string{"uniques", "total", "sum:amount", "at_least:2"}}
		got, err4 := many.s.AnalyzeEvents(ctx, r)
		want, err1 := one.s.AnalyzeEvents(ctx, r)
		if err1 != nil || err4 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: events %v\n got %+v (%v)\nwant %+v (%v)", at, rg, got, err4, want, err1)
		}
		f, l := want.Days[0], want.Days[len(want.Days)-1]
		for _, s := range got.Series {
			if w := raw.EventSeries(in[s.Segment], s.Event, s.Measure, f, l); !slices.Equal(s.Values, w) {
				t.Fatalf("%s: events %s %s %s: got %v, reference %v", at, s.Segment, s.Event, s.Measure, s.Values, w)
			}
		}
	}

	steps := []string{"page_view", "checkout", "pay"}
	for _, mode := range []string{"", "strict_order", "strict_deduplication", "strict_increase"} {
		window := []string{"1d", "6h", "3d"}[rng.IntN(3)]
		w, _ := api.ParseWindow(window)
		r := &api.AnalysisFunnelRequest{Steps: []api.FunnelStep{{Event: steps[0]}, {Event: steps[1]}, {Event: steps[2]}},
			Window: window, From: from, To: to, Segments: segNames, Mode: mode}
		got, err4 := many.s.AnalyzeFunnel(ctx, r)
		want, err1 := one.s.AnalyzeFunnel(ctx, r)
		if err1 != nil || err4 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: funnel %q\n got %+v (%v)\nwant %+v (%v)", at, mode, got, err4, want, err1)
		}
		for _, s := range got.Segments {
			ref := raw.Funnel(in[s.Segment], steps, w, strings.Contains(mode, "strict_order"),
				strings.Contains(mode, "dedup"), strings.Contains(mode, "increase"), got.From, got.To)
			for k := range ref {
				if s.Steps[k].Users != ref[k] {
					t.Fatalf("%s: funnel %q %s: got %+v, reference %v", at, mode, s.Segment, s.Steps, ref)
				}
			}
		}
	}

	for _, mode := range []string{api.RetentionFirstTime, api.RetentionRecurring} {
		for _, rg := range ranges {
			r := &api.AnalysisRetentionRequest{StartEvent: "page_view", ReturnEvent: "checkout", From: rg[0], To: rg[1],
				Days: 4, Mode: mode, Segments: segNames}
			got, err4 := many.s.AnalyzeRetention(ctx, r)
			want, err1 := one.s.AnalyzeRetention(ctx, r)
			if err1 != nil || err4 != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: retention %s %v\n got %+v (%v)\nwant %+v (%v)", at, mode, rg, got, err4, want, err1)
			}
			f, l := many.s.span(rg[0], rg[1])
			for _, s := range got.Segments {
				sizes, retained, days := raw.Retention(in[s.Segment], "page_view", "checkout", f, l, 4, mode == api.RetentionRecurring)
				if len(s.Cohorts) != len(sizes) {
					t.Fatalf("%s: retention %s %s: %d cohorts, reference %d", at, mode, s.Segment, len(s.Cohorts), len(sizes))
				}
				for i, co := range s.Cohorts {
					if co.Day != days[i] || co.Size != sizes[i] || !slices.Equal(co.Retained, retained[i]) {
						t.Fatalf("%s: retention %s %s: got %+v, reference %s %d %v", at, mode, s.Segment, co, days[i], sizes[i], retained[i])
					}
				}
			}
		}
	}

	for _, rg := range ranges {
		r := &api.AnalysisTrendRequest{Segments: segNames, From: rg[0], To: rg[1]}
		got, err4 := many.s.AnalyzeTrend(ctx, r)
		want, err1 := one.s.AnalyzeTrend(ctx, r)
		if err1 != nil || err4 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: trend %v\n got %+v (%v)\nwant %+v (%v)", at, rg, got, err4, want, err1)
		}
		if len(got.Days) > 0 && got.Days[len(got.Days)-1] == today {
			for _, ts := range got.Segments[1:] {
				n, _ := many.s.SegmentCount(ts.Segment)
				if ts.Sizes[len(ts.Sizes)-1] != n {
					t.Fatalf("%s: trend %s today %d, size %d", at, ts.Segment, ts.Sizes[len(ts.Sizes)-1], n)
				}
			}
		}
	}

	for u := range testUsers + 11 {
		r := &api.UserGetRequest{User: fmt.Sprintf("u%d", u), Segment: "checkout_3x_7d", Limit: 1 + rng.IntN(5), Offset: rng.IntN(3)}
		if rng.IntN(2) == 0 {
			r.From, r.To = from, to
		}
		got, err4 := many.s.UserGet(ctx, r)
		want, err1 := one.s.UserGet(ctx, r)
		if err1 != nil || err4 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: user.get %s\n got %+v (%v)\nwant %+v (%v)", at, r.User, got, err4, want, err1)
		}
	}
}
