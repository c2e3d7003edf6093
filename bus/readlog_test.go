package bus

import (
	"context"
	"io"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReadLog reads a range of the events stream in order, decoded as the
// consumer decodes, from the first sequence the stream still holds, and
// ends at the range's end or the stream's without waiting.
func TestReadLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := streamEnv(t)
	for i := 1; i <= 8; i++ {
		publish(t, js, "segd.events.x", batchOf(i))
	}
	publish(t, js, "segd.events.x", "not a batch")                              // 9
	publish(t, js, ControlUploadSubject, `{"segment":"vip","users":["a","b"]}`) // 10
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(3)); err != nil { // keeps 3..
		t.Fatal(err)
	}
	read := func(from, to uint64) []*IngestMessage {
		t.Helper()
		r, err := ReadLog(ctx, js, "", from, to)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []*IngestMessage
		for {
			m, err := r.Next(ctx)
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	got := read(1, 6)
	if len(got) != 4 || got[0].Seq != 3 || got[3].Seq != 6 || got[0].Batch.Events[0].User != "u3" {
		t.Fatalf("read 1..6: %d messages, first %+v", len(got), got)
	}
	got = read(5, 100)
	if len(got) != 6 || got[4].Seq != 9 || got[4].Err == nil || got[5].Upload == nil || got[5].Upload.Segment != "vip" {
		t.Fatalf("read 5..100: %+v", got)
	}
	if got := read(7, 6); len(got) != 0 {
		t.Fatalf("read 7..6: %+v", got)
	}
	if got := read(11, 20); len(got) != 0 {
		t.Fatalf("read past the end: %+v", got)
	}
}
