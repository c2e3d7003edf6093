package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

func TestEventsStreamRecordsPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := startTestServer(t)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := EnsureEventsStream(ctx, js, StreamConfig{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Metadata[api.StreamPartitionsKey]; got != "4" {
		t.Fatalf("metadata %s = %q, want 4", api.StreamPartitionsKey, got)
	}
	if _, err := EnsureEventsStream(ctx, js, StreamConfig{Partitions: 4}); err != nil {
		t.Fatalf("second start with the same P: %v", err)
	}
	_, err = EnsureEventsStream(ctx, js, StreamConfig{Partitions: 2})
	if !errors.Is(err, ErrPartitionsMismatch) || !strings.Contains(err.Error(), "holds 4 partitions") || !strings.Contains(err.Error(), "started with 2") {
		t.Fatalf("start with P=2 on a P=4 stream: %v, want a mismatch naming 4 and 2", err)
	}
	// P = 1 (the zero value) is a mismatch too.
	if _, err := EnsureEventsStream(ctx, js, StreamConfig{}); !errors.Is(err, ErrPartitionsMismatch) {
		t.Fatalf("start with P=1 on a P=4 stream: %v", err)
	}
	for _, p := range []int{-1, 257} {
		if _, err := EnsureEventsStream(ctx, js, StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}, Partitions: p}); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("P=%d: %v, want out of range", p, err)
		}
	}
}

func TestEventsStreamWithoutRecordTakesP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := streamEnv(t) // records 1
	// A stream made before partitions has no record: remove it.
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Metadata = map[string]string{"owner": "ops"}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s, err = EnsureEventsStream(ctx, js, StreamConfig{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	md := s.CachedInfo().Config.Metadata
	if md[api.StreamPartitionsKey] != "3" || md["owner"] != "ops" {
		t.Fatalf("metadata %v: want the partitions recorded and the operator's key kept", md)
	}
}

// usersOf returns n users of partition part of of.
func usersOf(part, of, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		u := fmt.Sprintf("u%d", i)
		if ingest.Partition(u, of) == part {
			out = append(out, u)
		}
	}
	return out
}

func TestKeepPartition(t *testing.T) {
	t.Parallel()
	mixed := `[{"user":"u1","event":"e","time":1},{"user":"u2","event":"e","time":1},{"user":"u3","event":"e","time":1},` +
		`{"user":"u4","profile":{"a":1}},{"user":"u5","event":"e"},{"bad":true}]`
	total := 0
	invalid := 0
	for n := range 3 {
		im := DecodeMessage(7, "segd.events.x", []byte(mixed), 5)
		if im.Batch.Invalid != 1 {
			t.Fatalf("decoded invalid %d", im.Batch.Invalid)
		}
		KeepPartition(im, n, 3)
		for _, e := range im.Batch.Events {
			if ingest.Partition(e.User, 3) != n {
				t.Errorf("partition %d kept %s", n, e.User)
			}
		}
		for _, p := range im.Batch.Profiles {
			if ingest.Partition(p.User, 3) != n {
				t.Errorf("partition %d kept profile of %s", n, p.User)
			}
		}
		total += len(im.Batch.Events) + len(im.Batch.Profiles)
		invalid += im.Batch.Invalid
	}
	if total != 5 || invalid != 1 {
		t.Fatalf("partitions kept %d items and %d invalid of a mixed batch, want 5 and 1 (invalid counted once)", total, invalid)
	}
	// A message that is no batch is partition 0's alone.
	for n := range 3 {
		im := DecodeMessage(8, "segd.events.x", []byte("nope"), 5)
		KeepPartition(im, n, 3)
		if (im.Err != nil) != (n == 0) {
			t.Errorf("partition %d: err %v", n, im.Err)
		}
	}
	// On a partition's own subject, another partition's user is counted
	// as invalid, naming where it belongs.
	own, other := usersOf(1, 3, 1)[0], usersOf(2, 3, 1)[0]
	im := DecodeMessage(9, api.PartitionSubject(1), []byte(fmt.Sprintf(`[{"user":%q,"event":"e"},{"user":%q,"event":"e"}]`, own, other)), 5)
	KeepPartition(im, 1, 3)
	if len(im.Batch.Events) != 1 || im.Batch.Events[0].User != own || im.Batch.Invalid != 1 || !strings.Contains(im.Batch.FirstInvalid, "belongs to partition 2 of 3") {
		t.Fatalf("misrouted item: %+v", im.Batch)
	}
	// Uploads: each partition takes its users; invalid ids counted once.
	var got []string
	for n := range 3 {
		im := &IngestMessage{Subject: ControlUploadSubject, Upload: &StaticUpload{Segment: "s", Users: []string{"u1", "u2", "u3", "u4"}, Invalid: 2}}
		KeepPartition(im, n, 3)
		got = append(got, im.Upload.Users...)
		if (im.Upload.Invalid == 2) != (n == 0) {
			t.Errorf("partition %d: upload invalid %d", n, im.Upload.Invalid)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"u1", "u2", "u3", "u4"}) {
		t.Fatalf("upload users across partitions %v", got)
	}
}

func TestPartitionConsumersSplitTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := streamEnv(t)
	const of = 2
	u0, u1 := usersOf(0, of, 2), usersOf(1, of, 2)
	publish(t, js, "segd.events.mixed", fmt.Sprintf(`[{"user":%q,"event":"e"},{"user":%q,"event":"e"}]`, u0[0], u1[0]))
	publish(t, js, api.PartitionSubject(1), fmt.Sprintf(`[{"user":%q,"event":"e"}]`, u1[1]))
	last := publish(t, js, api.PartitionSubject(0), fmt.Sprintf(`[{"user":%q,"event":"e"}]`, u0[1]))
	for n := range of {
		rec := newRecorder()
		opts := fastOpts()
		opts.Durable, opts.FilterSubjects, opts.Partition, opts.Partitions = PartitionDurable(n, of), PartitionFilterSubjects(n, of), n, of
		c, err := Consume(ctx, js, rec, opts)
		if err != nil {
			t.Fatal(err)
		}
		applied := rec.waitApplied(t, 2)
		c.Stop()
		var users []string
		for _, m := range applied {
			for _, e := range m.Batch.Events {
				users = append(users, e.User)
			}
		}
		want := []string{u0[0], u0[1]}
		if n == 1 {
			want = []string{u1[0], u1[1]}
		}
		if !slices.Equal(users, want) {
			t.Errorf("partition %d applied %v, want %v", n, users, want)
		}
		// Its log, as a rebuild reads it: the same items, and it ends.
		r, err := ReadPartitionLog(ctx, js, "", 1, last, n, of)
		if err != nil {
			t.Fatal(err)
		}
		users = users[:0]
		for {
			m, err := r.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range m.Batch.Events {
				users = append(users, e.User)
			}
		}
		r.Close()
		if !slices.Equal(users, want) {
			t.Errorf("partition %d's log %v, want %v", n, users, want)
		}
	}
}
