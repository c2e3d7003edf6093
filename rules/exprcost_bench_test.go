package rules

import (
	"context"
	"strings"
	"testing"
)

// worstItem is the costliest event a batch can carry (about 1 MiB of
// JSON): a list of 10,000 numbers, 100 orders of
// 5,000 items (500,000 numbers: all that fits in 1 MiB), one list of
// 500,000 numbers, and a string of 1 MiB.
func worstItem() Event {
	xs := make([]any, 500_000)
	for i := range xs {
		xs[i] = float64(i % 10)
	}
	orders := make([]any, 100)
	for i := range orders {
		items := make([]any, 5000)
		for j := range items {
			items[j] = float64(j % 10)
		}
		orders[i] = map[string]any{"items": items}
	}
	return Event{Name: "buy", User: "u", Props: map[string]any{"amount": 150.0, "country": "FR", "json": "[" + strings.Repeat("1,", 500_000) + "1]", "zones": zones(), "xs": xs[:10_000], "long": xs, "orders": orders, "s": strings.Repeat("a", 1<<20)}}
}

// orChain is `# == -1 || # == -2 || …` of about n nodes: a loop body as
// large as the node limit allows.
func orChain(n int) string {
	terms := make([]string, 0, n/6)
	for i := 1; len(terms) < n/6; i++ {
		terms = append(terms, "# == -"+itoa(i))
	}
	return strings.Join(terms, " || ")
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// BenchmarkExprWorstAccepted evaluates, on the largest item, the costliest
// expressions the limits accept; ns/op is the time one item costs.
func BenchmarkExprWorstAccepted(b *testing.B) {
	ev := []Event{worstItem()}
	for _, bc := range []struct{ name, src string }{
		{"loop-small-body", `any(props.xs, {# > 10})`},
		{"loop-body-at-node-limit", `any(props.xs, {` + orChain(maxExprNodes-20) + `})`},
		{"nested-parts", `any(props.orders, {any(#.items, {# > 10})})`},
		{"loop-over-limit", `any(props.long, {# > 10})`},
		{"range-at-limit", `any(1..10000, {# < 0})`},
		{"concat-chain", `len(props.s` + strings.Repeat(" + props.s", 150) + `) < 0`},
		{"string-chain", `len(string(props.xs))` + strings.Repeat(" + len(string(props.xs))", 50) + ` < 0`},
		{"string-long", `len(string(props.long)) < 0`},
		{"fromjson-long", `fromJSON(props.json) == nil`},
		{"typical", `props.amount > 100 && props.country in ["FR", "DE"]`},
		{"timezone", `timezone("Asia/Shanghai") != nil`},
		{"date-zone", `date("2026-01-02", "2006-01-02", "Asia/Shanghai").Year() == 2026`},
		{"timezone-from-data-loop", `all(props.zones, {timezone(#) != nil})`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			prog, err := compileEventExpr(bc.src)
			if err != nil {
				b.Fatal(err)
			}
			pred := newExprEventPredicate(bc.src, prog)
			out := NewBits(1)
			b.ReportAllocs()
			for b.Loop() {
				_ = pred.MatchEvents(context.Background(), ev, out)
			}
			if n, last := pred.EvalErrors(); n > 0 {
				b.Logf("%d evaluation errors: %s", n, last)
			}
		})
	}
}

// zones is 10,000 time zone names, few of them distinct.
func zones() []any {
	names := []string{"UTC", "Asia/Shanghai", "Europe/Paris", "America/New_York"}
	zs := make([]any, 10_000)
	for i := range zs {
		zs[i] = names[i%len(names)]
	}
	return zs
}
