package rules

import (
	"context"
	"fmt"
	"github.com/expr-lang/expr/vm"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tests in this file back "Limits of expressions" in docs/rules.md:
// an expression whose work per item can grow faster than the item is
// refused when the rule is compiled, with its place in the rule file.

// ruleWith is a rule file whose only segment filters on where.
func ruleWith(where string) []File {
	return []File{{Name: "cost.yaml", Data: []byte(fmt.Sprintf(`segments:
  - id: costly
    did:
      event: buy
      where: '%s'
      last: 7d
`, strings.ReplaceAll(where, "'", "''")))}}
}

// TestExprCostRefused: each costly form is refused by CompileSet (what
// segd rule validate, the rules admin API and segment.preview use) with
// FILE:LINE:COL, the segment, the field, what is too costly and the limit.
func TestExprCostRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		where string
		col   int // 1-based column of the costly node within the expression
		want  string
	}{
		// The report of issue 11: over 10 minutes on one event.
		{`reduce(1..900000, #acc + string(#), "") != ""`, 9, "range 1..900000 has 900000 elements; the limit is 10000"},
		{`reduce(1..900000, #acc + #, 0) > 0`, 9, "range 1..900000 has 900000 elements; the limit is 10000"},
		{`len(1..10001) > 0`, 6, "the limit is 10000"},
		{`all(1..props.n, {# > 0})`, 6, "a range must have integer constants as bounds"},
		{`all(props.xs, {all(props.xs, {# > 0})})`, 16, "all inside another iteration goes over data that is not the current element"},
		{`any(props.os, {any(#.items, {any(#.parts, {# > 0})})})`, 30, "iterations nest 3 deep; the limit is 2"},
		{`reduce(props.xs, #acc + string(#), "") != ""`, 1, "an accumulator built with + must start from a number"},
		{`reduce(props.xs, #acc + #) != ""`, 1, "an accumulator built with + must start from a number"},
		{`any(props.xs, {# in props.ys})`, 18, "in inside an iteration searches a list that is not the current element"},
		{`any(props.xs, {props.s contains #})`, 24, "contains inside an iteration scans a string"},
		{`any(props.xs, {# matches props.re})`, 18, "needs a literal pattern"},
		{`any(props.xs, {len(join(props.xs, ",")) > 0})`, 20, "join inside an iteration works on data that is not the current element"},
		{`any(props.xs, {sum(props.xs) > #})`, 16, "sum inside another iteration"},
		{`any(props.xs, {# + props.s == "x"})`, 18, "+ inside an iteration with a value that is not the current element"},
		{`count(props.xs, {let y = props.xs; len(sort(y)) > 0}) > 0`, 40, "sort inside an iteration"},
		{`any(props.xs, {len(props.s) > #})`, 16, "len inside an iteration works on data that is not the current element"},
		{`any(props.xs, {int(props.s) > #})`, 16, "int inside an iteration"},
		{`let __segd_meter = 1; any(props.xs, {# > 0})`, 5, "names starting with __segd_ are reserved"},
		{`__segd_new_meter() != nil`, 1, "names starting with __segd_ are reserved"},
		{`toJSON(props) != ""`, 1, "unknown name toJSON"},
	} {
		_, err := CompileSet(ruleWith(tc.where), Options{})
		// The expression starts at column 14 of line 5, after "where: '".
		loc := fmt.Sprintf("cost.yaml:5:%d: segment \"costly\": did.where: expr: ", 14+tc.col)
		if err == nil || !strings.Contains(err.Error(), loc) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s…%s", tc.where, err, loc, tc.want)
		}
	}
}

// TestExprCostProfileRefused: profile expressions have the same limits.
func TestExprCostProfileRefused(t *testing.T) {
	t.Parallel()
	_, err := CompileSet([]File{{Name: "p.yaml", Data: []byte("segments:\n  - id: p\n    profile: all(tags, {all(tags, {# != \"\"})})\n")}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "p.yaml:3:25: segment \"p\": profile: expr: all inside another iteration") {
		t.Fatalf("got %v", err)
	}
}

// TestExprCostAccepted: the forms the limits leave are the ones rules
// use: iteration over an element's own parts, arithmetic accumulators,
// literal lists, work hoisted out of the loop with let, ranges up to the cap.
func TestExprCostAccepted(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`any(props.orders, {any(#.items, {#.sku == "x"})})`,
		`reduce(props.items, #acc + #.price, 0) > 100`,
		`reduce(props.items, #acc + #.price, -1.5) > 100`,
		`any(props.items, {#.country in ["FR", "DE"]})`,
		`let total = sum(props.items, #.price); any(props.items, {#.price * 2 > total})`,
		`any(props.items, {#.price > 100 - props.shipping})`,
		`any(props.items, {#.name + "x" == "ax"})`,
		`any(props.items, {let n = #.name; upper(n) == "A"})`,
		`all(1..10000, {# > 0})`,
		`props.a + props.b > 3`,
		`len(join(props.xs, ",")) > 3`,
		`props.s matches props.re`,
	} {
		if _, err := compileEventExpr(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// TestExprCostExamples: the example rule files still compile under the
// limits.
func TestExprCostExamples(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob("../examples/rules/*.yaml")
	if err != nil || len(names) == 0 {
		t.Fatalf("example rules: %v %v", names, err)
	}
	var files []File
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Name: n, Data: data})
	}
	if _, err := CompileSet(files, Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestExprRunBounds: what depends on the item is metered while the
// expression runs. Past exprFuel units the item does not match and the
// failure is counted with the limit; a smaller item is judged as usual.
func TestExprRunBounds(t *testing.T) {
	t.Parallel()
	list := func(n int) []any {
		xs := make([]any, n)
		for i := range xs {
			xs[i] = 1.0
		}
		return xs
	}
	huge := list(exprFuel + 1)
	big := strings.Repeat("a", exprFuel/2+1)
	orders := make([]any, 100)
	for i := range orders {
		orders[i] = map[string]any{"items": list(5000)}
	}
	for _, tc := range []struct {
		src, want string
		over, ok  map[string]any
	}{
		// a loop of 300,000 elements × a body of 4 nodes
		{`any(props.xs, {# > 1})`, "any: the expression's work on this item exceeds the limit of 1000000 units",
			map[string]any{"xs": list(300_000)}, map[string]any{"xs": append(list(1000), 2.0)}},
		{`any(props.os, {any(#.items, {# > 1})})`, "any: the expression's work",
			map[string]any{"os": orders}, map[string]any{"os": []any{map[string]any{"items": []any{2.0}}}}},
		{`sum(props.xs) > 0`, "sum: the expression's work", map[string]any{"xs": huge}, map[string]any{"xs": list(2)}},
		{`props.s + props.s != ""`, "+: the expression's work", map[string]any{"s": big}, map[string]any{"s": "ab"}},
		{`any(props.xs, {# + # != ""})`, "+: the expression's work", map[string]any{"xs": []any{big}}, map[string]any{"xs": []any{"a"}}},
		{`len(join(props.xs, ",")) > 0`, "join: the expression's work", map[string]any{"xs": huge}, map[string]any{"xs": []any{"a"}}},
		{`props.a in props.ys`, "in: the expression's work", map[string]any{"a": 2.0, "ys": huge}, map[string]any{"a": 1.0, "ys": list(3)}},
		{`props.s contains "b"`, "contains: the expression's work", map[string]any{"s": big + big}, map[string]any{"s": "b"}},
		{`len(props.s) > 0`, "len: the expression's work", map[string]any{"s": big + big}, map[string]any{"s": "b"}},
		{`props.s matches "b"`, "matches: the expression's work", map[string]any{"s": big[:exprFuel/heavyCost+1]}, map[string]any{"s": "b"}},
		{`fromJSON(props.s) != nil`, "fromJSON: the expression's work", map[string]any{"s": "[" + strings.Repeat("1,", exprFuel/heavyCost/2) + "1]"}, map[string]any{"s": "[1]"}},
	} {
		p, err := compileEventExpr(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		pred := newExprEventPredicate(tc.src, p)
		out := NewBits(2)
		ev := []Event{{User: "u", Name: "x", Props: tc.over}, {User: "v", Name: "x", Props: tc.ok}}
		if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
			t.Fatal(err)
		}
		n, last := pred.EvalErrors()
		if out.Has(0) || !out.Has(1) || n != 1 || !strings.Contains(last, tc.want) {
			t.Errorf("%s: matched %v %v, %d errors (%s); want only the second to match and 1 error %q", tc.src, out.Has(0), out.Has(1), n, last, tc.want)
		}
	}
	// len of a list costs nothing: a long list is no error.
	p, err := compileEventExpr(`len(props.xs) > 0`)
	if err != nil {
		t.Fatal(err)
	}
	pred := newExprEventPredicate("len", p)
	out := NewBits(1)
	if err := pred.MatchEvents(context.Background(), []Event{{Props: map[string]any{"xs": huge}}}, out); err != nil || !out.Has(0) {
		t.Errorf("len of a long list: %v, matched %v", err, out.Has(0))
	}
	// Type errors are still found at compile time.
	if _, err := compileEventExpr(`event + "x"`); err == nil || !strings.Contains(err.Error(), "expected bool") {
		t.Errorf("a string-valued where compiled: %v", err)
	}
}

// TestExprZonesCached: timezone() and date(s, layout, zone) answer as
// expr's own do (the zone cache is invisible but for the time it saves);
// an unknown zone is an evaluation error, every time.
func TestExprZonesCached(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`timezone("Asia/Shanghai").String() == "Asia/Shanghai"`, true},
		{`date("2026-01-02 23:30", "2006-01-02 15:04", "Asia/Shanghai").UTC().Day() == 2`, true},
		{`date("2026-01-02 23:30", "2006-01-02 15:04", "America/New_York").UTC().Day() == 3`, true},
		{`date(props.d, "2006-01-02", props.tz).Unix() == 1767283200`, true},
		{`date(timezone("UTC"), "2026-01-02", "2006-01-02").Unix() == 1767312000`, true},
	} {
		props := map[string]any{"d": "2026-01-02", "tz": "Asia/Shanghai"}
		for _, c := range []struct {
			compile func(string) (*vm.Program, error)
			env     any
		}{{compileEventExpr, eventEnv{Props: props}}, {compileProfileExpr, map[string]any{"props": props}}} {
			p, err := c.compile(tc.src)
			if err != nil {
				t.Fatalf("%s: %v", tc.src, err)
			}
			for range 2 { // the second run reads the cache
				res, err := vm.Run(p, c.env)
				if err != nil || res != tc.want {
					t.Errorf("%s: %v %v", tc.src, res, err)
				}
			}
		}
	}
	p, err := compileEventExpr(`timezone(props.tz) != nil`)
	if err != nil {
		t.Fatal(err)
	}
	pred := newExprEventPredicate("tz", p)
	out := NewBits(2)
	for range 2 {
		if err := pred.MatchEvents(context.Background(), []Event{{Props: map[string]any{"tz": "Nowhere/Atlantis"}}, {Props: map[string]any{"tz": "UTC"}}}, out); err != nil {
			t.Fatal(err)
		}
	}
	if n, last := pred.EvalErrors(); out.Has(0) || !out.Has(1) || n != 2 || !strings.Contains(last, "Nowhere/Atlantis") {
		t.Errorf("an unknown zone: matched %v %v, %d errors (%s)", out.Has(0), out.Has(1), n, last)
	}
}

// TestExprRunBoundsProfile: profile expressions are metered as event
// expressions are.
func TestExprRunBoundsProfile(t *testing.T) {
	t.Parallel()
	p, err := compileProfileExpr(`any(xs, {# > 1})`)
	if err != nil {
		t.Fatal(err)
	}
	long := make([]any, 300_000)
	for i := range long {
		long[i] = 1.0
	}
	pred := newExprProfilePredicate("any", p)
	out := NewBits(2)
	if err := pred.MatchProfiles(context.Background(), []Profile{{User: "a", Attrs: map[string]any{"xs": long}}, {User: "b", Attrs: map[string]any{"xs": []any{2.0}}}}, out); err != nil {
		t.Fatal(err)
	}
	if n, last := pred.EvalErrors(); out.Has(0) || !out.Has(1) || n != 1 || !strings.Contains(last, "exceeds the limit of 1000000 units") {
		t.Errorf("matched %v %v, %d errors (%s)", out.Has(0), out.Has(1), n, last)
	}
}
