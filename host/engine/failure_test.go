package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/rules"
)

// flakyPlugins resolves every plugin to a predicate that fails any batch
// holding an event named "boom", as a plugin that traps on some input does.
type flakyPlugins struct{}

type flakyPredicate struct{}

func (flakyPlugins) EventPredicate(rules.PluginRef) (rules.EventPredicate, error) {
	return flakyPredicate{}, nil
}

func (flakyPlugins) ProfilePredicate(ref rules.PluginRef) (rules.ProfilePredicate, error) {
	return nil, errors.New("no profile predicates here")
}

func (flakyPredicate) MatchEvents(_ context.Context, events []rules.Event, out rules.Bits) error {
	for i, e := range events {
		if e.Name == "boom" {
			return errors.New("plugin trapped: unreachable executed")
		}
		out.Set(i)
	}
	return nil
}

// A predicate that fails a whole batch marks its segment failed, and every
// other rule keeps exact results from the same batch.
func TestFailingPredicateIsContained(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	segs, err := rules.Compile([]rules.File{{Name: "p.yaml", Data: []byte(`
segments:
  - {id: plugged, did: {events: [pay, boom], where: {plugin: flaky}, last: 7d}}
  - {id: payers, did: {event: pay, last: 7d}}
`)}}, rules.Options{Plugins: flakyPlugins{}})
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Segments: segs, Clock: NewManualClock(now), TickInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()
	ev := func(user, name string) rules.Event { return rules.Event{User: user, Name: name, Time: now.UnixMilli()} }
	if err := e.Apply(ctx, &bus.IngestMessage{Seq: 1, Batch: rules.Batch{Events: []rules.Event{ev("a", "pay")}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(ctx, &bus.IngestMessage{Seq: 2, Batch: rules.Batch{Events: []rules.Event{ev("b", "pay"), ev("c", "boom")}}}); err != nil {
		t.Fatalf("a failing predicate failed the batch: %v", err)
	}
	if m := members(t, e, "payers"); !slices.Equal(m, []string{"a", "b"}) {
		t.Fatalf("payers = %v: another rule's failure changed it", m)
	}
	var plugged, payers bool
	for _, s := range e.Segments() {
		switch s.ID {
		case "plugged":
			plugged = s.Status == "failed" && strings.Contains(s.Error, "plugin trapped")
		case "payers":
			payers = s.Status == "active" && s.Size == 2
		}
	}
	if !plugged || !payers {
		t.Fatalf("segments = %+v", e.Segments())
	}
	if st := e.Status(); st.LastSeq != 2 || st.Events != 3 {
		t.Fatalf("status = %+v: no event may be lost", st)
	}
}
