package setexpr

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// TestLimits: what used to crash the process (a stack overflow on 1 MiB
// of '(') or hold a server up for seconds (a 200 KB flat expression) is a
// located error; expressions at the limits parse.
func TestLimits(t *testing.T) {
	t.Parallel()
	l := DefaultLimits
	for _, tc := range []struct {
		name, expr string
		col        int
		msg        string
	}{
		{"1 MiB of (", strings.Repeat("(", 1<<20), 16<<10 + 1, "bytes long; at most"},
		{"deep (", strings.Repeat("(", l.MaxDepth+1) + "a" + strings.Repeat(")", l.MaxDepth+1), l.MaxDepth + 1, "nest more than 64 deep"},
		{"deep !", strings.Repeat("!", l.MaxDepth+1) + "a", l.MaxDepth + 1, "nest more than 64 deep"},
		{"deep mixed", strings.Repeat("!(", 40) + "a" + strings.Repeat(")", 40), 65, "nest more than 64 deep"},
		{"too many nodes", strings.Repeat("a|", l.MaxNodes) + "a", 2*l.MaxNodes - 1, "more than 1000 names and operators"},
		{"200 KB flat", strings.Repeat("a | ", 50000) + "a", 16<<10 + 1, "at most 16384"},
		{"long name in a message", "a b" + strings.Repeat("c", 1000), 3, `(1001 bytes)`},
		{"too many names", manyNames(l.MaxNames + 1), 1 + 5*l.MaxNames, "more than 100 distinct segments"},
	} {
		_, err := Parse(tc.expr)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %v, want an *Error", tc.name, err)
			continue
		}
		if e.Column != tc.col || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%s: column %d %q, want column %d containing %q", tc.name, e.Column, e.Msg, tc.col, tc.msg)
		}
		if len(e.Msg) > 300 {
			t.Errorf("%s: a %d-byte message", tc.name, len(e.Msg))
		}
	}
	// At the limits, everything parses.
	for _, expr := range []string{
		strings.Repeat("(", l.MaxDepth) + "a" + strings.Repeat(")", l.MaxDepth),
		strings.Repeat("!", l.MaxDepth) + "a",
		strings.Repeat("a|", l.MaxNodes-2) + "a", // MaxNodes-1 names and one |
		manyNames(l.MaxNames),
	} {
		x, err := Parse(expr)
		if err != nil {
			t.Errorf("%.40q...: %v", expr, err)
			continue
		}
		if _, err := x.Eval(context.Background(), map[string]*roaring.Bitmap{"a": roaring.BitmapOf(1)}, 4); err != nil {
			t.Error(err)
		}
	}
}

// manyNames is n distinct names joined by |: "s000 | s001 | ...".
func manyNames(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("s%03d", i)
	}
	return strings.Join(parts, "|")
}

// TestEvalStopsWithContext: a done context stops the evaluation.
func TestEvalStopsWithContext(t *testing.T) {
	t.Parallel()
	x, err := Parse("a | b & !c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := x.Eval(ctx, nil, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Eval with a cancelled context: %v", err)
	}
}

// TestEvalSharesOperands: evaluation never modifies the sets it is given,
// nor returns one of them.
func TestEvalSharesOperands(t *testing.T) {
	t.Parallel()
	a, b := roaring.BitmapOf(1, 2, 3), roaring.BitmapOf(3, 4)
	sets := map[string]*roaring.Bitmap{"a": a, "b": b}
	for _, expr := range []string{"a", "(a)", "a & b", "a - b", "a | b", "a & !b", "!a & b", "a & a"} {
		x, err := Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := x.Eval(context.Background(), sets, 8)
		if err != nil {
			t.Fatal(err)
		}
		got.Add(7)
		if a.GetCardinality() != 3 || b.GetCardinality() != 2 {
			t.Fatalf("%s modified an operand: a=%v b=%v", expr, a.ToArray(), b.ToArray())
		}
	}
}

// BenchmarkParseFlat200K parses a 200 KB flat expression with no limits,
// to show that parsing is linear (the parser of bus/query.go took 9.9 s).
func BenchmarkParseFlat200K(b *testing.B) {
	expr := strings.Repeat("a | ", 50000) + "a"
	b.ReportAllocs()
	b.SetBytes(int64(len(expr)))
	for b.Loop() {
		if _, err := (Limits{}).Parse(expr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseMax parses the largest expression DefaultLimits allow.
func BenchmarkParseMax(b *testing.B) {
	expr := strings.Repeat("young_men|", DefaultLimits.MaxNodes-2) + "a"
	expr = expr[:min(len(expr), DefaultLimits.MaxLength)]
	expr = strings.TrimRight(expr, "|")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(expr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvalMax evaluates the largest expression DefaultLimits allow
// (as many terms as fit, alternating !, & and -) over three sets of
// 1M-user universe at half density: the worst segment.query's work.
func BenchmarkEvalMax(b *testing.B) {
	const universe = 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	sets := map[string]*roaring.Bitmap{}
	for _, name := range []string{"vip", "churned", "young_men"} {
		bm := roaring.New()
		for u := range uint32(universe) {
			if rng.IntN(2) == 0 {
				bm.Add(u)
			}
		}
		sets[name] = bm
	}
	var src strings.Builder
	terms := []string{"vip", "!churned & young_men", "(young_men - vip)"}
	for i := 0; ; i++ {
		next := src.String() + " | " + terms[i%3]
		if x, err := Parse(next); i > 0 && (err != nil || x.Nodes() > DefaultLimits.MaxNodes-8) {
			break
		}
		if i > 0 {
			src.WriteString(" | ")
		}
		src.WriteString(terms[i%3])
	}
	x, err := Parse(src.String())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d nodes, %d bytes", x.Nodes(), src.Len())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Eval(context.Background(), sets, universe); err != nil {
			b.Fatal(err)
		}
	}
}
