package plugins

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/segd/segd/sdk"
	"github.com/segd/segd/sdk/sdktest"
)

// TestSDKTestEncodesLikeTheHost: a batch built by sdk/sdktest (what plugin
// authors unit-test with) reads, through the Go SDK, exactly like the batch
// the host encodes from the same events, though the two lay the columns
// out differently.
func TestSDKTestEncodesLikeTheHost(t *testing.T) {
	ev := randomEvents(rand.New(rand.NewPCG(16, 3)), 300)
	keys := []string{"amount", "lat", "lon", "items", "premium", "term", "nested", "missing"}
	var seen []string
	sdk.HandleEvents(func(e sdk.Event) bool {
		s := fmt.Sprintf("%s %s %d %d:", e.User(), e.Name(), e.Time(), sdk.Now())
		for _, k := range keys {
			s += fmt.Sprintf(" %s=%v/%v/%q/%s", k, e.Type(k), e.Num(k), e.Str(k), e.JSON(k))
		}
		seen = append(seen, s)
		return e.Bool("premium")
	})
	read := func(batch []byte) ([]string, []bool) {
		t.Helper()
		seen = nil
		got, err := sdktest.Match(batch)
		if err != nil {
			t.Fatal(err)
		}
		return seen, got
	}
	var enc encoder
	hostView, hostBits := read(enc.encode(nil, kindEvents, 123, items{ev: ev}, nil))
	sev := make([]sdktest.Event, len(ev))
	for i, e := range ev {
		sev[i] = sdktest.Event{User: e.User, Name: e.Name, Time: e.Time, Props: e.Props}
	}
	testView, testBits := read(sdktest.Events(123, sev...))
	if len(hostView) != len(ev) || len(testView) != len(ev) {
		t.Fatalf("%d and %d items read, want %d", len(hostView), len(testView), len(ev))
	}
	matches := 0
	for i := range ev {
		if hostView[i] != testView[i] || hostBits[i] != testBits[i] {
			t.Fatalf("event %d:\nhost    %s %v\nsdktest %s %v", i, hostView[i], hostBits[i], testView[i], testBits[i])
		}
		if testBits[i] {
			matches++
		}
	}
	if matches == 0 {
		t.Fatal("no event matched: the data does not exercise the answer")
	}
}
