package plugins

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/segd/segd/rules"
)

// randomEvents makes n events with a mix of property types, missing
// properties, nulls, nested values and unicode.
func randomEvents(rng *rand.Rand, n int) []rules.Event {
	terms := []string{"Cheap LAPTOP deals", "garden hose", "iPhone 15 case", "usb-c cable", "seeds for tomatoes",
		"", "ñandú plüsch", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)", "laptop", "lap top", "HOSEPIPE"}
	ev := make([]rules.Event, n)
	for i := range ev {
		p := map[string]any{}
		if rng.IntN(10) > 0 {
			p["amount"] = math.Round(rng.Float64()*2000-100) / 10
		} else if rng.IntN(2) == 0 {
			p["amount"] = "12.5" // a string is not a number
		}
		if rng.IntN(8) > 0 {
			p["lat"] = 48.80 + rng.Float64()*0.1
			p["lon"] = 2.25 + rng.Float64()*0.15
		}
		if rng.IntN(3) > 0 {
			p["items"] = float64(rng.IntN(10))
		}
		switch rng.IntN(4) {
		case 0:
			p["premium"] = true
		case 1:
			p["premium"] = false
		case 2:
			p["premium"] = nil
		}
		if rng.IntN(5) > 0 {
			p["term"] = terms[rng.IntN(len(terms))]
		}
		if rng.IntN(10) == 0 {
			p["nested"] = map[string]any{"a": []any{1.0, "x"}}
		}
		ev[i] = rules.Event{User: fmt.Sprintf("u%d", rng.IntN(1000)), Name: "checkout", Time: 1700000000000 + int64(i), Props: p}
	}
	return ev
}

func profilesOf(ev []rules.Event) []rules.Profile {
	ps := make([]rules.Profile, len(ev))
	for i, e := range ev {
		ps[i] = rules.Profile{User: e.User, Attrs: e.Props}
	}
	return ps
}

func num(p map[string]any, k string) (float64, bool) {
	f, ok := p[k].(float64)
	return f, ok
}

// Native Go versions of the example plugins, written independently.

func nativeAmount(min float64) func(map[string]any) bool {
	return func(p map[string]any) bool { a, ok := num(p, "amount"); return ok && a > min }
}

var paris = [][][2]float64{
	{{48.82, 2.27}, {48.87, 2.27}, {48.87, 2.33}, {48.82, 2.33}},                // a square
	{{48.84, 2.34}, {48.89, 2.36}, {48.85, 2.39}, {48.86, 2.36}, {48.83, 2.38}}, // a concave one
}

func nativeGeofence(p map[string]any) bool {
	lat, ok1 := num(p, "lat")
	lon, ok2 := num(p, "lon")
	if !ok1 || !ok2 {
		return false
	}
	for _, poly := range paris {
		in := false
		for a, b := 0, len(poly)-1; a < len(poly); b, a = a, a+1 {
			ya, xa, yb, xb := poly[a][0], poly[a][1], poly[b][0], poly[b][1]
			if (ya > lat) != (yb > lat) && lon < (xb-xa)*(lat-ya)/(yb-ya)+xa {
				in = !in
			}
		}
		if in {
			return true
		}
	}
	return false
}

func nativeScoring(p map[string]any) bool {
	w := map[string]float64{"amount": 0.01, "items": 0.3, "premium": 1.5}
	caps := map[string]float64{"amount": 100}
	keys := []string{"amount", "items", "premium"}
	sort.Strings(keys)
	s := -2.0
	for _, k := range keys {
		x := 0.0
		switch v := p[k].(type) {
		case float64:
			x = v
			if c, ok := caps[k]; ok && x > c {
				x = c
			}
		case bool:
			if v {
				x = 1
			}
		}
		s += w[k] * x
	}
	return 1/(1+math.Exp(-s)) >= 0.6
}

// scoringParams is the model of the scoring example that nativeScoring
// implements.
var scoringParams = map[string]any{
	"weights": map[string]any{"amount": 0.01, "items": 0.3, "premium": 1.5},
	"caps":    map[string]any{"amount": 100}, "bias": -2, "logistic": true, "threshold": 0.6,
}

var classes = map[string][]string{
	"electronics": {"laptop", "iphone", "usb-c", "charger", "phone"},
	"garden":      {"hose", "seeds", "rake"},
}

func nativeSearch(p map[string]any) bool {
	s, _ := p["term"].(string)
	s = strings.ToLower(s)
	for _, kw := range classes["electronics"] {
		if strings.Contains(s, kw) {
			return true
		}
	}
	return false
}

// tokenWords are the words of the tokens example (Rust) in the tests.
var tokenWords = []string{"laptop", "IPHONE", "usb", "hose", "plüsch", "cable"}

// nativeTokens is the tokens example: any token of the term (runs of ASCII
// letters and digits and of non-ASCII bytes, ASCII-lowercased) in the words.
func nativeTokens(p map[string]any) bool {
	s, ok := p["term"].(string)
	if !ok {
		return false
	}
	words := map[string]bool{}
	for _, w := range tokenWords {
		words[strings.ToLower(w)] = true
	}
	tok := func(c byte) bool {
		return c >= 0x80 || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; i < len(s); {
		if !tok(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && tok(s[j]) {
			j++
		}
		// ASCII-only lowering: strings.ToLower would also fold non-ASCII.
		b := []byte(s[i:j])
		for k, c := range b {
			if c >= 'A' && c <= 'Z' {
				b[k] = c + 'a' - 'A'
			}
		}
		if words[string(b)] {
			return true
		}
		i = j
	}
	return false
}

func TestExamplesMatchNative(t *testing.T) {
	type tc struct {
		name     string
		params   map[string]any
		native   func(map[string]any) bool
		profiles bool
		needs    func(testing.TB) // a toolchain the module needs
	}
	cases := []tc{
		{name: "amount", params: map[string]any{"min": 50.5}, native: nativeAmount(50.5), profiles: true},
		{name: "amountwat", params: map[string]any{"min": 50.5}, native: nativeAmount(50.5), needs: requireWabt},
		{name: "amount_c", params: map[string]any{"min": 50.5}, native: nativeAmount(50.5), profiles: true, needs: requireC},
		{name: "amount_rs", params: map[string]any{"min": 50.5}, native: nativeAmount(50.5), profiles: true, needs: requireRust},
		{name: "amount_rs_batch", params: map[string]any{"min": 50.5}, native: nativeAmount(50.5), profiles: true, needs: requireRust},
		{name: "scoring_rs", params: scoringParams, native: nativeScoring, profiles: true, needs: requireRust},
		{name: "tokens", params: map[string]any{"prop": "term", "words": tokenWords}, native: nativeTokens,
			profiles: true, needs: requireRust},
		{name: "geofence", params: map[string]any{"polygons": paris}, native: nativeGeofence, profiles: true},
		{name: "scoring", params: scoringParams, native: nativeScoring, profiles: true},
		{name: "searchclass", params: map[string]any{"prop": "term", "classes": classes, "match": []string{"electronics"}},
			native: nativeSearch, profiles: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.needs != nil {
				c.needs(t)
			}
			manifest := ""
			if c.name == "geofence" {
				manifest = "props: [lat, lon]\nmax_batch: 256\n"
			}
			reg, err := setup(t, Options{}, testPlugin{name: c.name, manifest: manifest})
			if err != nil {
				t.Fatal(err)
			}
			ref := rules.PluginRef{Name: c.name, Params: c.params}
			pred, err := reg.EventPredicate(ref)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, uint64(len(c.name))))
			total := 0
			for _, n := range []int{1, 63, 64, 65, 1000, 5000} {
				ev := randomEvents(rng, n)
				out := rules.NewBits(n)
				if err := pred.MatchEvents(context.Background(), ev, out); err != nil {
					t.Fatal(err)
				}
				for i, e := range ev {
					if got, want := out.Has(i), c.native(e.Props); got != want {
						t.Fatalf("n=%d event %d %v: plugin %v, native %v", n, i, e.Props, got, want)
					}
				}
				total += out.Count()
				if !c.profiles {
					continue
				}
				pp, err := reg.ProfilePredicate(ref)
				if err != nil {
					t.Fatal(err)
				}
				ps := profilesOf(ev)
				pout := rules.NewBits(n)
				if err := pp.MatchProfiles(context.Background(), ps, pout); err != nil {
					t.Fatal(err)
				}
				for i := range ps {
					if pout.Has(i) != out.Has(i) {
						t.Fatalf("profile %d: %v, event answer %v", i, pout.Has(i), out.Has(i))
					}
				}
			}
			if total == 0 {
				t.Fatalf("no event matched: the test data does not exercise %s", c.name)
			}
			st, _ := reg.Status(c.name)
			if st.State != StateOK || st.Traps+st.Timeouts+st.GuestErrors != 0 {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestBadParamsAndKinds(t *testing.T) {
	reg, err := setup(t, Options{}, testPlugin{name: "geofence"}, testPlugin{name: "searchclass"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.EventPredicate(rules.PluginRef{Name: "geofence", Params: map[string]any{
		"polygons": [][][2]float64{{{1, 2}, {3, 4}}}}})
	if err == nil || !strings.Contains(err.Error(), "polygons[0]: has 2 points, need at least 3") {
		t.Fatalf("bad polygon: %v", err)
	}
	_, err = reg.EventPredicate(rules.PluginRef{Name: "searchclass", Params: map[string]any{"match": []string{"toys"}}})
	if err == nil || !strings.Contains(err.Error(), `unknown class "toys"`) {
		t.Fatalf("unknown class: %v", err)
	}
	_, err = reg.EventPredicate(rules.PluginRef{Name: "nope"})
	if err == nil || !strings.Contains(err.Error(), `unknown plugin "nope" (loaded: geofence, searchclass)`) {
		t.Fatalf("unknown plugin: %v", err)
	}
}
