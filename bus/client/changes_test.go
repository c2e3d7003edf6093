package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// TestConsumeChangesRetriesWithinAMessage feeds a message of five changes
// to a handler that fails on the third once: the third comes again after
// the delay, the first two are not repeated, and the next message follows.
func TestConsumeChangesRetriesWithinAMessage(t *testing.T) {
	t.Parallel()
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := bus.EnsureChangesStream(ctx, js, bus.ChangesStreamConfig{}); err != nil {
		t.Fatal(err)
	}
	for i, b := range []api.ChangeBatch{
		{Segment: "s", Time: "2026-11-28T10:00:00Z", Enter: []string{"a", "b", "c"}, Exit: []string{"d", "e"}},
		{Segment: "s", Time: "2026-11-28T10:00:01Z", Exit: []string{"a"}},
	} {
		data, _ := json.Marshal(b)
		msg := &nats.Msg{Subject: api.ChangesSubjectPrefix + "s", Data: data, Header: nats.Header{api.HeaderEventsSeq: {"7"}}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	var mu sync.Mutex
	var got []string
	failed := false
	done := make(chan struct{})
	c, err := client.ConsumeChanges(ctx, js, client.ChangeConsumerOptions{RetryDelay: 10 * time.Millisecond}, func(m client.ChangeMsg) error {
		mu.Lock()
		defer mu.Unlock()
		if m.User == "c" && !failed {
			failed = true
			return errors.New("not now")
		}
		got = append(got, m.Change.Change+":"+m.User)
		wantCount, wantIndex := map[uint64]int{1: 5, 2: 1}[m.StreamSeq], map[string]int{"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}[m.User]
		if m.StreamSeq == 2 {
			wantIndex = 0
		}
		if m.EventsSeq != 7 || m.Count != wantCount || m.Index != wantIndex || m.Segment != "s" {
			t.Errorf("change %+v", m)
		}
		if len(got) == 6 {
			close(done)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("handled %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"enter:a", "enter:b", "enter:c", "exit:d", "exit:e", "exit:a"}
	if !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v (nothing repeated)", got, want)
	}
}
