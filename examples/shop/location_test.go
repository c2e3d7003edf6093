package shop

import (
	"strings"
	"testing"
	"unicode"
)

// TestCheckoutsHaveCoordinates: every checkout carries lat/lon, and some
// fall inside the geofence of examples/plugins/rules.yaml (near the Eiffel
// Tower), so that its segment is not always empty in the demo.
func TestCheckoutsHaveCoordinates(t *testing.T) {
	t.Parallel()
	items := collect(New(testConfig(5)))
	checkouts, inParis := 0, 0
	for _, it := range items {
		if it.Event != EventCheckout {
			continue
		}
		checkouts++
		lat, ok1 := it.Props["lat"].(float64)
		lon, ok2 := it.Props["lon"].(float64)
		if !ok1 || !ok2 {
			t.Fatalf("checkout without coordinates: %+v", it)
		}
		// The polygon of shoppers_near_the_eiffel_tower.
		if lat >= 48.852 && lat <= 48.862 && lon >= 2.287 && lon <= 2.302 {
			inParis++
		}
	}
	if checkouts == 0 || inParis == 0 || inParis > checkouts/10 {
		t.Fatalf("%d of %d checkouts inside the Paris geofence; want some, and few", inParis, checkouts)
	}
	t.Logf("%d of %d checkouts in Paris", inParis, checkouts)
}

// TestSearchesReachTheTokensExample: some searches name a word the Rust
// tokens example plugin looks for (examples/plugins/rust-rules.yaml), so
// its segment has members in the demo.
func TestSearchesReachTheTokensExample(t *testing.T) {
	t.Parallel()
	items := collect(New(testConfig(5)))
	searches, hits := 0, 0
	for _, it := range items {
		if it.Event != EventSearch {
			continue
		}
		searches++
		term, _ := it.Props["term"].(string)
		for _, w := range strings.FieldsFunc(strings.ToLower(term), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			if w == "cable" || w == "charger" || w == "hdmi" || w == "usb" || w == "adapter" {
				hits++
				break
			}
		}
	}
	if searches == 0 || hits == 0 || hits > searches/4 {
		t.Fatalf("%d of %d searches name a word of the tokens example; want some, and few", hits, searches)
	}
	t.Logf("%d of %d searches name a word of the tokens example", hits, searches)
}
