package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// namedEvents is an event predicate that says which it is.
type namedEvents string

func (namedEvents) MatchEvents(context.Context, []Event, Bits) error { return nil }

// namedProfiles is a profile predicate that says which it is.
type namedProfiles string

func (namedProfiles) MatchProfiles(context.Context, []Profile, Bits) error { return nil }

// TestPredicatesEveryPlace puts a predicate in every place a rule can hold
// one, under every combinator, and checks each comes out once, in order,
// with the empty places left out and stopping early honoured.
func TestPredicatesEveryPlace(t *testing.T) {
	t.Parallel()
	cond := &All{Of: []Condition{
		&Did{Step: Step{Where: namedEvents("did")}},
		&Did{}, // no where
		&Any{Of: []Condition{
			&Sequence{Steps: []Step{{Where: namedEvents("step1")}, {}, {Where: namedEvents("step3")}}},
			&Sequence{Steps: []Step{{Where: namedEvents("dropoff")}}, ThenNot: &Step{Where: namedEvents("then_not")}},
			&Sequence{Steps: []Step{{}}, ThenNot: &Step{}},
		}},
		&Not{Of: &ProfileCondition{Predicate: namedProfiles("profile")}},
		&ProfileCondition{},
		&InSegment{Segment: "other"},
	}}
	var got []string
	for p := range Predicates(cond) {
		got = append(got, fmt.Sprint(p))
	}
	want := []string{"did", "step1", "step3", "dropoff", "then_not", "profile"}
	if !slices.Equal(got, want) {
		t.Fatalf("predicates = %v, want %v", got, want)
	}

	for stop := 1; stop <= len(want); stop++ {
		var n int
		for range Predicates(cond) {
			n++
			if n == stop {
				break
			}
		}
		if n != stop {
			t.Fatalf("stopping after %d: walked %d", stop, n)
		}
	}
	for range Predicates(nil) {
		t.Fatal("a nil condition has no predicates")
	}
}

// TestPredicatesOfCompiledRules checks the walk against compiled rules:
// every where and profile expression is found, none other.
func TestPredicatesOfCompiledRules(t *testing.T) {
	t.Parallel()
	segs, err := Compile([]File{{Name: "r.yaml", Data: []byte(`
segments:
  - id: a
    all:
      - did: {event: pay, where: "props.amount > 1", last: 7d}
      - any:
          - sequence: {steps: [{event: x, where: "props.n == 1"}, {event: y}], within: 1h, last: 7d}
          - sequence: {steps: [{event: x}], then_not: {event: z, where: "props.n == 2"}, within: 1h, last: 7d}
      - not: {profile: "age < 30"}
  - id: b
    did: {event: pay, last: 7d}
`)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var events, profiles int
	for p := range Predicates(segs[0].Condition) {
		switch p.(type) {
		case EventPredicate:
			events++
		case ProfilePredicate:
			profiles++
		default:
			t.Fatalf("unexpected %T", p)
		}
	}
	if events != 3 || profiles != 1 {
		t.Fatalf("event predicates %d, profile predicates %d; want 3 and 1", events, profiles)
	}
	for p := range Predicates(segs[1].Condition) {
		t.Fatalf("a did without where has no predicate, got %T", p)
	}
}

// Summing the evaluation errors of a segment's predicates, as segment.list
// does.
func ExamplePredicates() {
	segs, err := Compile([]File{{Name: "shop.yaml", Data: []byte(`
segments:
  - id: big_spenders
    all:
      - did: {event: checkout, where: "props.amount > 100", last: 7d}
      - profile: "age < 30"
`)}}, Options{})
	if err != nil {
		panic(err)
	}
	// A checkout without an amount cannot be judged: an evaluation error.
	did := segs[0].Condition.(*All).Of[0].(*Did)
	_ = did.Where.MatchEvents(context.Background(), []Event{{Name: "checkout"}}, NewBits(1))

	var predicates, errors uint64
	for p := range Predicates(segs[0].Condition) {
		predicates++
		if st, ok := p.(EvalStats); ok {
			n, _ := st.EvalErrors()
			errors += n
		}
	}
	fmt.Println(predicates, "predicates,", errors, "evaluation error")
	// Output: 2 predicates, 1 evaluation error
}

// TestProbeNotCounted checks that a probe's failures (the empty profile an
// engine judges to know a user with no profile) are not evaluation errors,
// and a user's are.
func TestProbeNotCounted(t *testing.T) {
	t.Parallel()
	segs, err := Compile([]File{{Name: "r.yaml", Data: []byte(`
segments:
  - id: young
    profile: "age < 30"
  - id: spender
    did: {event: pay, where: "props.amount > 1", last: 7d}
`)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Condition{}
	for _, s := range segs {
		byID[s.ID] = s.Condition
	}
	prof := byID["young"].(*ProfileCondition).Predicate
	ev := byID["spender"].(*Did).Where
	ctx := context.Background()
	for range 3 {
		_ = prof.MatchProfiles(Probe(ctx), []Profile{{}}, NewBits(1))
		_ = ev.MatchEvents(Probe(ctx), []Event{{Name: "pay"}}, NewBits(1))
	}
	for _, p := range []any{prof, ev} {
		if n, last := p.(EvalStats).EvalErrors(); n != 0 || last != "" {
			t.Fatalf("%T after probes: %d errors (%q); want none", p, n, last)
		}
	}
	_ = prof.MatchProfiles(ctx, []Profile{{User: "u1"}}, NewBits(1))
	_ = ev.MatchEvents(ctx, []Event{{Name: "pay", User: "u1"}}, NewBits(1))
	for _, p := range []any{prof, ev} {
		if n, last := p.(EvalStats).EvalErrors(); n != 1 || !strings.Contains(last, "u1") {
			t.Fatalf("%T after a user's item: %d errors (%q); want 1", p, n, last)
		}
	}
	if IsProbe(ctx) || !IsProbe(Probe(ctx)) {
		t.Fatal("IsProbe does not tell a probe")
	}
}
