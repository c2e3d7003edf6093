package bus

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// dlqEnv starts a server with the events and dead-letter streams.
func dlqEnv(t *testing.T) (jetstream.JetStream, *DeadLetters) {
	t.Helper()
	js := streamEnv(t)
	dlq, err := EnsureDeadLetters(context.Background(), js, DeadLetterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return js, dlq
}

// deadLetter fetches the dead letter of an events-stream sequence.
func deadLetter(t *testing.T, js jetstream.JetStream, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(context.Background(), DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := info.State.FirstSeq; i <= info.State.LastSeq && info.State.Msgs > 0; i++ {
		m, err := s.GetMsg(context.Background(), i)
		if err != nil {
			continue
		}
		if m.Header.Get(HeaderDLQSeq) == strconv.FormatUint(seq, 10) {
			return m
		}
	}
	t.Fatalf("no dead letter for seq %d among %d", seq, info.State.Msgs)
	return nil
}

// TestHugeNotBatchDoesNotWedgeTheStream: a message just under the max
// payload that is not a batch cannot be copied to SEGD_DLQ in full (the
// copy adds headers). It must still be recorded and acked, and the valid
// batch after it applied, in this run and in a replay after a restart.
func TestHugeNotBatchDoesNotWedgeTheStream(t *testing.T) {
	t.Parallel()
	js, dlq := dlqEnv(t)
	maxPayload := int(js.Conn().MaxPayload())
	huge := bytes.Repeat([]byte("z"), maxPayload-64)
	msg := nats.NewMsg("segd.events.big")
	msg.Header.Set("Producer", "p-1")
	msg.Data = huge
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	bad := ack.Sequence
	good := publish(t, js, "segd.events.big", batchOf(1))

	for run := range 2 { // the second run replays the log, as after a restart
		rec := newRecorder()
		opts := fastOpts()
		opts.DeadLetters = dlq
		opts.StartSeq = 1
		c, err := Consume(context.Background(), js, rec, opts)
		if err != nil {
			t.Fatal(err)
		}
		got := rec.waitApplied(t, 2)
		c.Stop()
		if got[0].Seq != bad || got[0].Err == nil || got[1].Seq != good || got[1].Err != nil {
			t.Fatalf("run %d: applied %d (err %v), %d (err %v)", run, got[0].Seq, got[0].Err, got[1].Seq, got[1].Err)
		}
	}

	dl := deadLetter(t, js, bad)
	if dl.Header.Get(HeaderDLQTruncated) == "" || dl.Header.Get(HeaderDLQSize) != strconv.Itoa(len(huge)) ||
		dl.Header.Get(HeaderDLQReason) == "" || dl.Header.Get(HeaderDLQSubject) != "segd.events.big" ||
		dl.Header.Get("Producer") != "p-1" {
		t.Errorf("record headers %v", dl.Header)
	}
	if len(dl.Data) == 0 || len(dl.Data) > DeadLetterPrefix || !bytes.HasPrefix(huge, dl.Data) {
		t.Errorf("record data: %d bytes, want a prefix of the message of at most %d", len(dl.Data), DeadLetterPrefix)
	}
	if n := dlq.Records(); n != 1 {
		t.Errorf("Records() = %d, want 1 (the replay's copy is a duplicate)", n)
	}
}

// TestDeadLetterRecordWithHugeHeaders: original headers that JetStream
// accepted but that leave no room for the dead letter's own (its headers
// are limited to 64 KiB) are dropped from the copy, which says so.
func TestDeadLetterRecordWithHugeHeaders(t *testing.T) {
	t.Parallel()
	js, dlq := dlqEnv(t)
	msg := nats.NewMsg("segd.events.hdr")
	msg.Header.Set("Bulky", strings.Repeat("h", maxHeaderBytes-100))
	msg.Data = []byte("not json")
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	opts := fastOpts()
	opts.DeadLetters = dlq
	c, err := Consume(context.Background(), js, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	rec.waitApplied(t, 1)
	dl := deadLetter(t, js, ack.Sequence)
	if dl.Header.Get("Bulky") != "" || dl.Header.Get(HeaderDLQTruncated) == "" || string(dl.Data) != "not json" {
		t.Errorf("record: headers %d bytes, truncated %q, data %q", len(dl.Header.Get("Bulky")), dl.Header.Get(HeaderDLQTruncated), dl.Data)
	}
}
