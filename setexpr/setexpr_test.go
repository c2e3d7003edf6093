package setexpr

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestParseQueryPrecedence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expr, want string }{
		{"vip", "vip"},
		{"vip & !churned | new_7d", "((vip & !churned) | new_7d)"},
		{"a | b & c", "(a | (b & c))"},
		{"a - b & c", "(a - (b & c))"},
		{"a | b - c", "(a | (b - c))"},
		{"a - b - c", "(a - b - c)"},
		{"!!a", "!!a"},
		{"!(a | b) & c", "(!(a | b) & c)"},
		{"(a | b) - (c & !d)", "((a | b) - (c & !d))"},
		{"young-men - vip", "(young-men - vip)"},
		{"a -b", "(a - b)"},
		{"a- b", "(a - b)"},
		{"  a\t&\nb  ", "(a & b)"},
	} {
		q, err := Parse(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if got := q.String(); got != tc.want {
			t.Errorf("%q parsed as %s, want %s", tc.expr, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr string
		col  int
		msg  string
	}{
		{"", 1, "empty"},
		{"vip &", 6, "expected a segment id"},
		{"vip & & churned", 7, "expected a segment id"},
		{"(vip | new", 11, "expected ')' to close the '(' at column 1"},
		{"vip)", 4, "unmatched ')'"},
		{"vip churned", 5, `expected an operator (&, |, -) before segment "churned"`},
		{"vip & 7d", 7, `unexpected character "7"`},
		{"vip & ()", 8, "empty parentheses"},
		{"a | é", 5, `unexpected character "é"`},
	} {
		_, err := Parse(tc.expr)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("%q: %v, want a *Error", tc.expr, err)
			continue
		}
		if qe.Column != tc.col || !strings.Contains(qe.Msg, tc.msg) {
			t.Errorf("%q: column %d %q, want column %d containing %q", tc.expr, qe.Column, qe.Msg, tc.col, tc.msg)
		}
	}
	_, err := Parse("vip & & churned")
	if got, want := err.(*Error).Caret(), " | vip & & churned\n | ......^"; got != want {
		t.Errorf("caret:\n%s\nwant\n%s", got, want)
	}
}

// randomExpr builds a random expression over names and the naive set it
// denotes over the universe 0..n-1.
func randomExpr(rng *rand.Rand, sets map[string]map[uint32]bool, names []string, n uint32, depth int) (string, map[uint32]bool) {
	if depth == 0 || rng.IntN(3) == 0 {
		name := names[rng.IntN(len(names))]
		return name, sets[name]
	}
	switch rng.IntN(5) {
	case 0:
		s, a := randomExpr(rng, sets, names, n, depth-1)
		out := map[uint32]bool{}
		for u := range n {
			if !a[u] {
				out[u] = true
			}
		}
		return "!" + s, out
	case 1:
		s, a := randomExpr(rng, sets, names, n, depth-1)
		return "(" + s + ")", a
	}
	ls, a := randomExpr(rng, sets, names, n, depth-1)
	rs, b := randomExpr(rng, sets, names, n, depth-1)
	op := []string{"&", "|", "-"}[rng.IntN(3)]
	out := map[uint32]bool{}
	for u := range n {
		switch op {
		case "&":
			out[u] = a[u] && b[u]
		case "|":
			out[u] = a[u] || b[u]
		case "-":
			out[u] = a[u] && !b[u]
		}
		if !out[u] {
			delete(out, u)
		}
	}
	// Parenthesize so that the naive evaluation's grouping is the parse's.
	return "(" + ls + " " + op + " " + rs + ")", out
}

// TestQueryAgainstNaiveSets holds Eval to a map-based computation on random
// data and random expressions, and checks precedence against explicit
// parentheses.
func TestQueryAgainstNaiveSets(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := uint32(1 + rng.IntN(3000))
		names := []string{"a", "b", "c", "d-1"}
		sets := map[string]map[uint32]bool{}
		bms := map[string]*roaring.Bitmap{}
		for _, name := range names {
			sets[name] = map[uint32]bool{}
			bm := roaring.New()
			density := rng.Float64()
			for u := range n {
				if rng.Float64() < density {
					sets[name][u] = true
					bm.Add(u)
				}
			}
			bms[name] = bm
		}
		expr, want := randomExpr(rng, sets, names, n, 4)
		q, err := Parse(expr)
		if err != nil {
			t.Fatalf("round %d: %q: %v", round, expr, err)
		}
		before := map[string]uint64{}
		for k, v := range bms {
			before[k] = v.GetCardinality()
		}
		got, err := q.Eval(context.Background(), bms, uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		if got.GetCardinality() != uint64(len(want)) {
			t.Fatalf("round %d: %s: %d users, want %d", round, expr, got.GetCardinality(), len(want))
		}
		for u := range want {
			if !got.Contains(u) {
				t.Fatalf("round %d: %s: missing %d", round, expr, u)
			}
		}
		for k, v := range bms {
			if v.GetCardinality() != before[k] {
				t.Fatalf("round %d: Eval modified %s", round, k)
			}
		}
	}
	// Precedence: the unparenthesized form equals the explicit grouping.
	n := uint32(500)
	bms := map[string]*roaring.Bitmap{}
	for i, name := range []string{"a", "b", "c", "d"} {
		bm := roaring.New()
		for u := range n {
			if (u*uint32(i+3))%7 < uint32(2+i) {
				bm.Add(u)
			}
		}
		bms[name] = bm
	}
	for implicit, explicit := range map[string]string{
		"!a & b | c - d":  "((!a) & b) | (c - d)",
		"a | b & !c - d":  "a | ((b & (!c)) - d)",
		"a - b | c & d":   "(a - b) | (c & d)",
		"!a - !b & c | d": "((!a) - ((!b) & c)) | d",
	} {
		qi, err1 := Parse(implicit)
		qe, err2 := Parse(explicit)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		a, _ := qi.Eval(context.Background(), bms, uint64(n))
		b, _ := qe.Eval(context.Background(), bms, uint64(n))
		if !a.Equals(b) {
			t.Errorf("%s (%d) != %s (%d)", implicit, a.GetCardinality(), explicit, b.GetCardinality())
		}
	}
}

// FuzzParse: any expression a client sends gets an expression or an
// *Error whose column lies within the expression (or just past it), never
// a panic; an expression that parses prints as one that parses the same
// way, and evaluates.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"vip & !churned | new_7d", "(a | b) - (c & !d)", "!(!a)", "a |", "((a)", "é & b",
		"young-men - vip", "a -b", "a- b", "\xff", strings.Repeat("(", 70) + "a", strings.Repeat("!", 70) + "a"} {
		f.Add(s)
	}
	sets := map[string]*roaring.Bitmap{"a": roaring.BitmapOf(1, 2, 3), "b": roaring.BitmapOf(2, 5)}
	f.Fuzz(func(t *testing.T, expr string) {
		x, err := Parse(expr)
		if err != nil {
			var qe *Error
			if !errors.As(err, &qe) {
				t.Fatalf("%q: %T %v, want a *Error", expr, err, err)
			}
			if qe.Column < 1 || qe.Column > utf8.RuneCountInString(expr)+1 {
				t.Fatalf("%q: column %d outside the expression", expr, qe.Column)
			}
			return
		}
		y, err := Limits{}.Parse(x.String())
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", expr, x.String(), err)
		}
		if y.String() != x.String() {
			t.Fatalf("%q printed as %q, which reads as %q", expr, x.String(), y.String())
		}
		got, err := x.Eval(context.Background(), sets, 8)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := y.Eval(context.Background(), sets, 8)
		if !got.Equals(want) {
			t.Fatalf("%q: %v, reprinted %v", expr, got.ToArray(), want.ToArray())
		}
	})
}
