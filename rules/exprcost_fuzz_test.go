package rules

import (
	"context"
	"testing"
)

// FuzzExprBounds compiles arbitrary expressions through the cost check
// and the metering patch, and runs what compiles on a small event: neither
// may panic, and what compiles must run (or fail with a counted error).
func FuzzExprBounds(f *testing.F) {
	for _, s := range []string{
		`reduce(1..900000, #acc + string(#), "") != ""`,
		`any(props.os, {any(#.items, {#.sku == "x"})})`,
		`reduce(props.items, #acc + #.price, 0) > 100`,
		`let t = sum(props.items, #.price); any(props.items, {#.price * 2 > t})`,
		`date(props.d, "2006-01-02", props.tz).Year() == 2026`,
		`props.s + props.s matches "a+"`,
		`len(join(map(props.items, {string(#.price)}), ",")) > 3`,
		`sortBy(props.items, .price, "desc")[0].price > 1`,
		`count(props.items) > 0 && count(props.items, .price > 1) > 0`,
	} {
		f.Add(s)
	}
	ev := []Event{{Name: "buy", User: "u", Props: map[string]any{
		"items": []any{map[string]any{"sku": "x", "price": 3.0}, map[string]any{"sku": "y", "price": 1.0}},
		"os":    []any{map[string]any{"items": []any{map[string]any{"sku": "x"}}}},
		"d":     "2026-01-02", "tz": "Asia/Shanghai", "s": "aaa",
	}}}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := compileEventExpr(src)
		if err != nil {
			return
		}
		if err := newExprEventPredicate(src, p).MatchEvents(context.Background(), ev, NewBits(1)); err != nil {
			t.Fatal(err)
		}
		pp, err := compileProfileExpr(src)
		if err != nil {
			return
		}
		profiles := []Profile{{User: "u", Attrs: ev[0].Props}}
		if err := newExprProfilePredicate(src, pp).MatchProfiles(context.Background(), profiles, NewBits(1)); err != nil {
			t.Fatal(err)
		}
	})
}
