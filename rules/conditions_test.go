package rules

import (
	"strings"
	"testing"
	"time"
)

const everyKind = `
segments:
  - id: big_spend
    did: {event: pay, aggregate: sum(amount), is: ">= 500", last: 30d}
  - id: active_days
    did: {events: [page_view, search], aggregate: days, is: "between 3 and 5", last: 7d}
  - id: brands
    did: {event: search, aggregate: distinct(term), is: "> 2", since: 2026-10-01}
  - id: november
    did: {event: checkout, between: [2026-11-01, 2026-11-15]}
  - id: lately
    did: {event: checkout, last: 24h}
  - id: ever_paid
    did: {event: pay, ever: true}
  - id: no_pay
    did_not: {event: pay, last: 7d}
  - id: converted
    sequence:
      steps: [{event: submit_order}, {event: pay, where: "props.method == 'alipay'"}]
      within: 24h
      last: 7d
  - id: unpaid
    sequence: {steps: [{event: submit_order}], then_not: {event: pay}, within: 24h, last: 7d}
  - id: new_users
    lifecycle: {stage: new, event: page_view, last: 7d}
  - id: stopped
    lifecycle: {stage: stopped, event: page_view, previous: 30d, last: 14d}
  - id: returned
    lifecycle: {stage: returned, event: page_view, previous: 14d, gap: 14d, last: 7d}
  - id: vip
    profile: is_vip == true
  - id: vip_spenders
    all:
      - in_segment: vip
      - any: [{in_segment: big_spend}, {not: {profile: "city == nil"}}]
  - id: not_vip
    not_in_segment: vip
  - id: beta
    static: true
`

func TestCompileEveryConditionKind(t *testing.T) {
	t.Parallel()
	segs, err := Compile([]File{{Name: "all.yaml", Data: []byte(everyKind)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Segment{}
	for _, s := range segs {
		byID[s.ID] = s
	}
	d := byID["big_spend"].Condition.(*Did)
	if d.Aggregate != (Aggregate{Func: AggSum, Prop: "amount"}) || d.Compare != (Comparison{Op: OpGE, Value: 500}) {
		t.Errorf("big_spend = %+v", d)
	}
	if w := byID["lately"].Condition.(*Did).Window; w.Unit != Hour || w.From != 23 || w.To != 0 {
		t.Errorf("lately window = %+v", w)
	}
	if w := byID["november"].Condition.(*Did).Window; w.Kind != Between || w.Start != (Date{2026, 11, 1}) || w.End != (Date{2026, 11, 15}) {
		t.Errorf("november window = %+v", w)
	}
	if w := byID["ever_paid"].Condition.(*Did).Window; w.From != DefaultMaxWindowDays-1 {
		t.Errorf("ever window = %+v", w)
	}
	if d := byID["no_pay"].Condition.(*Did); d.Compare != (Comparison{Op: OpEQ, Value: 0}) {
		t.Errorf("did_not = %+v", d)
	}
	seq := byID["converted"].Condition.(*Sequence)
	if len(seq.Steps) != 2 || seq.Within != 24*time.Hour || seq.ThenNot != nil || seq.Steps[1].Where == nil {
		t.Errorf("sequence = %+v", seq)
	}
	if drop := byID["unpaid"].Condition.(*Sequence); drop.ThenNot == nil || drop.ThenNot.Events[0] != "pay" {
		t.Errorf("drop-off = %+v", drop)
	}
	// Lifecycle stages are windows of did / did_not.
	ret := byID["returned"].Condition.(*All).Of
	want := [][3]int{{34, 21, 1}, {20, 7, 0}, {6, 0, 1}} // from, to, did (1) or not (0)
	for i, c := range ret {
		d := c.(*Did)
		did := 0
		if d.Compare.Op == OpGE {
			did = 1
		}
		if got := [3]int{d.Window.From, d.Window.To, did}; got != want[i] {
			t.Errorf("returned part %d = %v, want %v", i, got, want[i])
		}
	}
	if n := byID["new_users"].Condition.(*All).Of[1].(*Did).Window; n.From != DefaultMaxWindowDays-1 || n.To != 7 {
		t.Errorf("new: before-window = %+v", n)
	}
	if refs := byID["vip_spenders"].References; strings.Join(refs, ",") != "big_spend,vip" {
		t.Errorf("references = %v", refs)
	}
	kinds := map[string]string{"big_spend": KindBehavioral, "vip": KindAttribute, "vip_spenders": KindComposite,
		"not_vip": KindComposite, "beta": KindStatic, "unpaid": KindBehavioral}
	for id, k := range kinds {
		if got := byID[id].Kind(); got != k {
			t.Errorf("%s kind = %s, want %s", id, got, k)
		}
	}
}

func TestReferenceErrors(t *testing.T) {
	t.Parallel()
	_, err := Compile([]File{{Name: "c.yaml", Data: []byte(`
segments:
  - {id: a, in_segment: b}
  - {id: b, all: [{in_segment: c}, {profile: x == 1}]}
  - {id: c, not_in_segment: a}
  - {id: d, in_segment: nowhere}
`)}}, Options{})
	if err == nil {
		t.Fatal("compiled a cycle")
	}
	for _, want := range []string{`segment "a": segments refer to each other in a cycle: a → b → c → a`,
		`segment "d": refers to segment "nowhere", which is not defined`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not contain %q", err, want)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	t.Parallel()
	schema, err := ParseSchema("schema.yaml", []byte("strict: true\nevents:\n  pay: {amount: number, method: string}\n  search: {term: string}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, src, want string }{
		{"sum needs is", "id: x\ndid: {event: pay, aggregate: sum(amount), last: 7d}", `did.is: is missing`},
		{"bad aggregate", "id: x\ndid: {event: pay, aggregate: median(amount), is: 1, last: 7d}", `did.aggregate: want count, days, sum(PROP)`},
		{"sum without prop", "id: x\ndid: {event: pay, aggregate: sum, is: 1, last: 7d}", `sum needs a property`},
		{"count and aggregate", "id: x\ndid: {event: pay, count: 2, aggregate: days, last: 7d}", `has count and aggregate/is`},
		{"two windows", "id: x\ndid: {event: pay, last: 7d, since: 2026-01-01}", `has last and since; give one window`},
		{"bad between", "id: x\ndid: {event: pay, between: [2026-11-15, 2026-11-01]}", `2026-11-15 is after 2026-11-01`},
		{"bad date", "id: x\ndid: {event: pay, since: yesterday}", `want a date such as 2026-11-01, got "yesterday"`},
		{"hours beyond retention", "id: x\ndid: {event: pay, last: 2161h}", `2161h is longer than the 90d`},
		{"did_not takes no count", "id: x\ndid_not: {event: pay, count: 2, last: 7d}", `unknown field "count" (known: event, events, where, last, between, since, ever)`},
		{"sequence of one", "id: x\nsequence: {steps: [{event: a}], within: 1h, last: 7d}", `a sequence has at least two steps, or one step and then_not`},
		{"drop-off of two", "id: x\nsequence: {steps: [{event: a}, {event: b}], then_not: {event: c}, within: 1h, last: 7d}", `a drop-off has one step before then_not`},
		{"no within", "id: x\nsequence: {steps: [{event: a}, {event: b}], last: 7d}", `within: is missing`},
		{"bad within", "id: x\nsequence: {steps: [{event: a}, {event: b}], within: soon, last: 7d}", `want a positive duration such as 24h`},
		{"lifecycle stage", "id: x\nlifecycle: {stage: dormant, event: a, last: 7d}", `want new, stopped or returned, got "dormant"`},
		{"lifecycle missing previous", "id: x\nlifecycle: {stage: stopped, event: a, last: 7d}", `lifecycle.previous: is missing for stage stopped`},
		{"lifecycle beyond retention", "id: x\nlifecycle: {stage: stopped, event: a, last: 60d, previous: 60d}", `spans 120d, longer than the 90d`},
		{"empty all", "id: x\nall: []", `all: want a non-empty list of conditions`},
		{"unknown nested condition", "id: x\nany: [{did: {event: a, last: 1d}}, {maybe: 1}]", `any[1]: unknown condition "maybe"`},
		{"nested error path", "id: x\nall: [{not: {did: {event: a, last: 1x}}}]", `all[0].not.did.last: want a number of calendar days`},
		{"strict schema event", "id: x\ndid: {event: checkout, last: 7d}", `unknown event "checkout": the schema declares pay, search`},
		{"schema non-numeric", "id: x\ndid: {event: pay, aggregate: avg(method), is: 1, last: 7d}", `property "method" of event "pay" is a string in the schema; avg needs a number`},
		{"schema undeclared prop", "id: x\ndid: {event: pay, aggregate: max(tip), is: 1, last: 7d}", `event "pay" has no property "tip" in the schema`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{}
			if strings.HasPrefix(c.name, "strict") || strings.HasPrefix(c.name, "schema") {
				opts.Schema = schema
			}
			_, err := Compile([]File{{Name: "e.yaml", Data: []byte(c.src)}}, opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestWindowInterval(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, ny)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	now := at("2026-11-03 10:30") // two days after the DST change of Nov 1
	cases := []struct {
		w          Window
		start, end int64
	}{
		{Window{Kind: Rolling, Unit: Day, From: 6}, at("2026-10-28 00:00"), at("2026-11-04 00:00")},
		{Window{Kind: Rolling, Unit: Day, From: 13, To: 7}, at("2026-10-21 00:00"), at("2026-10-28 00:00")},
		{Window{Kind: Rolling, Unit: Hour, From: 23}, at("2026-11-02 11:00"), at("2026-11-03 11:00")},
		{Window{Kind: Between, Start: Date{2026, 10, 31}, End: Date{2026, 11, 1}}, at("2026-10-31 00:00"), at("2026-11-02 00:00")},
		{Window{Kind: Since, Start: Date{2026, 11, 1}}, at("2026-11-01 00:00"), at("2026-11-04 00:00")},
	}
	for _, c := range cases {
		s, e := c.w.Interval(now, ny)
		if s != c.start || e != c.end {
			t.Errorf("%+v: [%s, %s), want [%s, %s)", c.w, time.UnixMilli(s).In(ny), time.UnixMilli(e).In(ny),
				time.UnixMilli(c.start).In(ny), time.UnixMilli(c.end).In(ny))
		}
	}
	// The Nov 1 calendar day in New York lasts 25 hours.
	s, e := Window{Kind: Between, Start: Date{2026, 11, 1}, End: Date{2026, 11, 1}}.Interval(now, ny)
	if time.Duration(e-s)*time.Millisecond != 25*time.Hour {
		t.Errorf("Nov 1 lasts %v", time.Duration(e-s)*time.Millisecond)
	}
}

func TestNamedPredicates(t *testing.T) {
	t.Parallel()
	set, err := CompileSet([]File{
		{Name: "a.yaml", Data: []byte("predicates:\n  - {id: big_checkout, event: checkout, where: props.amount >= 500}\n  - {id: paid, events: [pay, refund_reversed]}\nsegments:\n  - {id: payers, did: {event: pay, last: 7d}}\n")},
		{Name: "b.yaml", Data: []byte("predicates:\n  - {id: searched, event: search, description: any search}\n")},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Segments) != 1 || len(set.Predicates) != 3 {
		t.Fatalf("set = %+v", set)
	}
	p := set.Predicates[0]
	if p.ID != "big_checkout" || p.Events[0] != "checkout" || p.Where == nil || p.File != "a.yaml" || p.Line != 2 {
		t.Fatalf("predicate = %+v", p)
	}
	if set.Predicates[2].Description != "any search" {
		t.Fatalf("predicate = %+v", set.Predicates[2])
	}
	_, err = CompileSet([]File{
		{Name: "a.yaml", Data: []byte("predicates:\n  - {id: x, event: a}\n  - {id: x, event: b}\n  - {event: c}\n  - {id: y, where: 'props.a >'}\n")},
	}, Options{})
	for _, want := range []string{`a.yaml:3: predicate "x" is already defined at a.yaml:2`, `predicates.id: is missing`,
		`predicate "y": predicate.event: is missing`, `predicate.where: expr:`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
}

func TestDayCacheMatchesDayOf(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "America/New_York", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		c := DayCache{Loc: loc}
		start := time.Date(2026, 10, 25, 0, 0, 0, 0, loc).UnixMilli()
		for i := int64(0); i < 20000; i++ {
			ms := start + (i*7919*60_000)%(14*24*3_600_000) - 3_600_000 // scattered over two weeks around a DST change
			if got, want := c.DayOf(ms), DayOf(ms, loc); got != want {
				t.Fatalf("%s: DayCache.DayOf(%s) = %s, want %s", zone, time.UnixMilli(ms).In(loc), got, want)
			}
		}
	}
}
