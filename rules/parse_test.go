package rules

import (
	"context"
	"strings"
	"testing"
)

func compileOne(t *testing.T, src string) ([]*Segment, error) {
	t.Helper()
	return Compile([]File{{Name: "shop.yaml", Data: []byte(src)}}, Options{})
}

func TestCompileBothKinds(t *testing.T) {
	t.Parallel()
	segs, err := compileOne(t, `
segments:
  - id: frequent_checkout
    description: Completed checkout at least 3 times in the last 7 days
    did:
      event: checkout
      where: props.amount > 100
      count: ">= 3"
      last: 7d
  - id: young_men
    profile: age < 25 && gender == "male"
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[0].ID != "frequent_checkout" || segs[1].ID != "young_men" {
		t.Fatalf("segments = %v", segs)
	}
	d, _ := segs[0].Condition.(*Did)
	if d == nil || d.Events[0] != "checkout" || d.Compare != (Comparison{Op: OpGE, Value: 3}) || d.Window.From != 6 || d.Window.To != 0 || d.Window.Unit != Day || d.Where == nil {
		t.Fatalf("did = %+v", d)
	}
	if segs[0].Kind() != KindBehavioral || segs[1].Kind() != KindAttribute {
		t.Fatalf("kinds = %s, %s", segs[0].Kind(), segs[1].Kind())
	}

	events := []Event{
		{Name: "checkout", Props: map[string]any{"amount": 150.0}},
		{Name: "checkout", Props: map[string]any{"amount": 50.0}},
		{Name: "checkout"}, // no amount: an evaluation error, counted, no match
	}
	bits := NewBits(len(events))
	if err := d.Where.MatchEvents(context.Background(), events, bits); err != nil {
		t.Fatal(err)
	}
	if !bits.Has(0) || bits.Has(1) || bits.Has(2) {
		t.Fatalf("where bits = %b", bits[0])
	}
	if n, last := d.Where.(EvalStats).EvalErrors(); n != 1 || !strings.Contains(last, "checkout") {
		t.Fatalf("eval errors = %d %q", n, last)
	}

	profiles := []Profile{
		{User: "a", Attrs: map[string]any{"age": 24.0, "gender": "male"}},
		{User: "b", Attrs: map[string]any{"age": 30.0, "gender": "male"}},
		{User: "c", Attrs: map[string]any{"age": 20.0, "gender": "female"}},
		{User: "d"},
	}
	pb := NewBits(len(profiles))
	if err := segs[1].Condition.(*ProfileCondition).Predicate.MatchProfiles(context.Background(), profiles, pb); err != nil {
		t.Fatal(err)
	}
	if pb.Count() != 1 || !pb.Has(0) {
		t.Fatalf("profile bits = %b", pb[0])
	}
}

func TestCompileSingleSegmentAndMultiDoc(t *testing.T) {
	t.Parallel()
	segs, err := compileOne(t, "id: a\nprofile: vip == true\n---\nid: b\ndid: {event: pay, last: 30d, count: 2}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[1].Condition.(*Did).Compare != (Comparison{Op: OpGE, Value: 2}) {
		t.Fatalf("segments = %+v", segs)
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src string
		want      []string // substrings of the error
	}{
		{"expr position", "segments:\n  - id: young\n    profile: age < < 25\n",
			[]string{`shop.yaml:3:20: segment "young": profile: expr: unexpected token`, "age < < 25"}},
		{"quoted expr position", "segments:\n  - id: young\n    profile: \"age < < 25\"\n",
			[]string{`shop.yaml:3:21: segment "young": profile:`}},
		{"unknown event field", "id: x\ndid: {event: pay, last: 7d, where: props.a > 1 && evnt == 'x'}\n",
			[]string{`segment "x": did.where: expr: unknown name evnt`}},
		{"unknown field", "id: x\ndid: {evnt: pay, last: 7d}\n",
			[]string{`shop.yaml:2:7: segment "x": did: unknown field "evnt" (known: event, events, where, count, aggregate, is, last, between, since, ever)`, `did.event: is missing`}},
		{"wrong type", "id: x\ndid: {event: [a, b], last: 7d}\n",
			[]string{`did.event: want a string, got a list`}},
		{"bad window", "id: x\ndid: {event: pay, last: 7 days}\n",
			[]string{`did.last: want a number of calendar days such as 7d, or of hours such as 24h, got "7 days"`}},
		{"window beyond retention", "id: x\ndid: {event: pay, last: 400d}\n",
			[]string{`400d is longer than the 90d of history segd keeps`}},
		{"bad count", "id: x\ndid: {event: pay, last: 7d, count: lots}\n",
			[]string{`did.count: want a comparison`}},
		{"no condition", "id: x\n", []string{`segment "x": needs a condition (did, did_not, sequence, lifecycle, profile, in_segment, not_in_segment, all, any, not) or static: true`}},
		{"two conditions", "id: x\nprofile: a\ndid: {event: pay, last: 7d}\n", []string{`has profile and did; a segment has one condition: combine several with all or any`}},
		{"bad id", "id: x y\nprofile: a\n", []string{`id: "x y" is not a valid id`}},
		{"missing id", "profile: a\n", []string{`id: is missing`}},
		{"plugin without registry", "id: x\nprofile: {plugin: geo}\n", []string{`plugin "geo": no plugins are loaded`}},
		{"not yaml", "id: [x\n", []string{`shop.yaml: not valid YAML`}},
		{"non-bool expr", "id: x\ndid: {event: pay, last: 7d, where: event + 'x'}\n", []string{`expected bool`}},
		{"now is disabled", "id: x\ndid: {event: pay, last: 7d, where: now() != nil}\n", []string{`now`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := compileOne(t, c.src)
			if err == nil {
				t.Fatal("compiled; want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestCompileDuplicateIDsAcrossFiles(t *testing.T) {
	t.Parallel()
	_, err := Compile([]File{
		{Name: "a.yaml", Data: []byte("id: x\nprofile: a == 1\n")},
		{Name: "b.yaml", Data: []byte("id: x\nprofile: a == 2\n")},
	}, Options{})
	if err == nil || !strings.Contains(err.Error(), `b.yaml:1: segment "x": id is already defined at a.yaml:1`) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseComparison(t *testing.T) {
	t.Parallel()
	cases := map[string]Comparison{
		">= 3": {Op: OpGE, Value: 3}, "<3": {Op: OpLT, Value: 3}, "= 0": {Op: OpEQ, Value: 0},
		"== 0": {Op: OpEQ, Value: 0}, "!= 1": {Op: OpNE, Value: 1}, "<= 2.5": {Op: OpLE, Value: 2.5},
		"> 1": {Op: OpGT, Value: 1}, "4": {Op: OpGE, Value: 4},
		"between 2 and 5": {Op: OpBetween, Value: 2, High: 5},
	}
	for in, want := range cases {
		got, err := ParseComparison(in)
		if err != nil || got != want {
			t.Errorf("ParseComparison(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ">=", "between 5 and 2", "about 3", "between 1"} {
		if _, err := ParseComparison(bad); err == nil {
			t.Errorf("ParseComparison(%q) succeeded", bad)
		}
	}
	c := Comparison{Op: OpBetween, Value: 2, High: 5}
	if !c.Holds(2) || !c.Holds(5) || c.Holds(1) || c.Holds(6) {
		t.Error("between is not inclusive at both ends")
	}
}

func TestSegmentSourceIsItsYAML(t *testing.T) {
	t.Parallel()
	segs, err := compileOne(t, "segments:\n  - id: a\n    profile: x == 1 # the x\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "id: a\nprofile: x == 1 # the x\n"; segs[0].Source != want {
		t.Fatalf("Source = %q, want %q", segs[0].Source, want)
	}
}
