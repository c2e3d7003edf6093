package rules

import (
	"context"
	"strings"
	"testing"
)

// The tests in this file back the claims docs/security.md makes about
// what a rule's expression can do.

// TestExprSizeLimit: an expression of more than maxExprNodes nodes is
// refused when the rule is compiled, with the reason.
func TestExprSizeLimit(t *testing.T) {
	t.Parallel()
	src := "props.a == 1" + strings.Repeat(" || props.a == 1", maxExprNodes/4)
	if _, err := compileEventExpr(src); err == nil || !strings.Contains(err.Error(), "exceeds maximum allowed nodes") {
		t.Fatalf("an expression of %d conditions compiled: %v", maxExprNodes/4+1, err)
	}
	if _, err := compileProfileExpr(strings.ReplaceAll(src, "props.", "")); err == nil {
		t.Fatal("a profile expression over the node limit compiled")
	}
}

// TestExprNoClockNoIO: an expression cannot read the clock (now() is
// disabled: a rule's answer must not depend on when it runs), and expr has
// no builtin that reads files, the environment or the network.
func TestExprNoClockNoIO(t *testing.T) {
	t.Parallel()
	for _, src := range []string{`now() != nil`, `env("HOME") != ""`, `readFile("/etc/passwd") != ""`, `exec("id") != ""`} {
		if _, err := compileEventExpr(src); err == nil || !strings.Contains(err.Error(), "unknown name") {
			t.Errorf("%s: %v, want unknown name", src, err)
		}
	}
}

// TestExprMemoryBudget: expressions that would allocate without bound
// stop at expr's memory budget; the event does not match and the failure
// is counted (segment.list shows it), and the next event is evaluated.
// (Ranges longer than maxRangeLen and loops over data outside the current
// element are refused earlier, at compile time: exprcost_test.go.)
func TestExprMemoryBudget(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`len(repeat("x", 100000000)) > 0 || props.a == 1`,
		`len(map(1..10000, 1..200)) > 0 || props.a == 1`,
		`len(split(repeat("a,", 900000), ",")) > 0 || props.a == 1`,
	} {
		p, err := compileEventExpr(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		pred := newExprEventPredicate(src, p)
		out := NewBits(2)
		ev := []Event{{User: "u", Name: "x", Props: map[string]any{"a": 1}}, {User: "v", Name: "x", Props: map[string]any{"a": 1}}}
		if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
			t.Fatal(err)
		}
		n, last := pred.EvalErrors()
		if out.Has(0) || out.Has(1) || n != 2 || !strings.Contains(last, "memory budget exceeded") {
			t.Errorf("%s: matched %v %v, %d errors (%s); want no match and 2 budget errors", src, out.Has(0), out.Has(1), n, last)
		}
	}
}
