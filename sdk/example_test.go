package sdk_test

import (
	"fmt"
	"strings"

	"github.com/segd/segd/sdk"
	"github.com/segd/segd/sdk/sdktest"
)

// A per-event predicate reading a property by name. A real plugin registers
// it from an init function of package main; sdktest judges a batch natively.
func ExampleHandleEvents() {
	sdk.HandleEvents(func(e sdk.Event) bool {
		return e.Name() == "checkout" && e.Num("amount") > 100
	})
	got, err := sdktest.Match(sdktest.Events(0,
		sdktest.Event{User: "ann", Name: "checkout", Props: map[string]any{"amount": 150}},
		sdktest.Event{User: "bob", Name: "checkout", Props: map[string]any{"amount": 50}},
		sdktest.Event{User: "cy", Name: "checkout", Props: map[string]any{"amount": "150"}}, // not a number
		sdktest.Event{User: "di", Name: "refund", Props: map[string]any{"amount": 150}},
	))
	fmt.Println(got, err)
	// Output: [true false false false] <nil>
}

// Parameters come from the rule (where: {plugin: NAME, params: {...}}) and
// are decoded once per instance, in an OnInit callback.
func ExampleOnInit() {
	var min float64
	sdk.OnInit(func() error {
		var p struct {
			Min float64 `json:"min"`
		}
		if err := sdk.Params(&p); err != nil {
			return err
		}
		if p.Min < 0 {
			return fmt.Errorf("params: min is %v, must be at least 0", p.Min)
		}
		min = p.Min
		return nil
	})
	sdk.HandleEvents(func(e sdk.Event) bool { return e.Num("amount") >= min })

	fmt.Println(sdk.Init([]byte(`{"min": -1}`))) // the host reports this where the rule is compiled
	fmt.Println(sdk.Init([]byte(`{"min": 10}`)), min)
	// Output:
	// params: min is -1, must be at least 0
	// <nil> 10
}

// Keys resolve a property name once per batch; reading through them is an
// index into the column. Strings alias the batch: copy them to keep them.
func ExampleProp() {
	var (
		country = sdk.Prop("country")
		premium = sdk.Prop("premium")
	)
	sdk.HandleProfiles(func(p sdk.Profile) bool {
		return p.BoolOf(premium) && strings.EqualFold(p.StrOf(country), "fr")
	})
	got, _ := sdktest.Match(sdktest.Profiles(0,
		sdktest.Profile{User: "ann", Attrs: map[string]any{"country": "FR", "premium": true}},
		sdktest.Profile{User: "bob", Attrs: map[string]any{"country": "FR", "premium": false}},
		sdktest.Profile{User: "cy", Attrs: map[string]any{"country": "DE", "premium": true}},
		sdktest.Profile{User: "di"},
	))
	fmt.Println(got)
	// Output: [true false false false]
}

// A batch handler loops over whole columns, with no call per event: the
// fastest way to write a Go plugin.
func ExampleHandleEventBatch() {
	amount := sdk.Prop("amount")
	sdk.HandleEventBatch(func(b *sdk.Batch, out sdk.Bits) {
		vals, types := b.Nums(amount)
		for i, v := range vals {
			if types[i] == sdk.Number && v > 100 && b.Times()[i] > b.Now()-3600_000 {
				out.Set(i)
			}
		}
	})
	now := int64(1_700_000_000_000)
	got, _ := sdktest.Match(sdktest.Events(now,
		sdktest.Event{Time: now - 60_000, Props: map[string]any{"amount": 150}},
		sdktest.Event{Time: now - 7200_000, Props: map[string]any{"amount": 150}}, // too old
		sdktest.Event{Time: now, Props: map[string]any{"amount": nil}},
	))
	fmt.Println(got)
	// Output: [true false false]
}

// SendOnlyKeys makes the host send only the properties the plugin declared
// with Prop, here from the rule's parameters.
func ExampleSendOnlyKeys() {
	var keys []sdk.Key
	sdk.SendOnlyKeys()
	sdk.OnInit(func() error {
		var p struct {
			Props []string `json:"props"`
		}
		if err := sdk.Params(&p); err != nil {
			return err
		}
		for _, name := range p.Props {
			keys = append(keys, sdk.Prop(name))
		}
		return nil
	})
	if err := sdk.Init([]byte(`{"props": ["lat", "lon"]}`)); err != nil {
		fmt.Println(err)
	}
	names, only := sdk.DeclaredProps() // what segd_props answers the host
	fmt.Println(only, names[len(names)-2:])
	// Output: true [lat lon]
}
