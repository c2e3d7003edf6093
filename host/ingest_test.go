package host

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/segd/segd/host/engine"
)

// TestHugeNotBatchIsRecordedAndPassed: a message just under the max
// payload that is not a batch cannot be copied whole to SEGD_DLQ; segd
// stores a record of it, acks it, applies the batch after it, and the
// status says so.
func TestHugeNotBatchIsRecordedAndPassed(t *testing.T) {
	t.Parallel()
	clock := engine.NewManualClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	ts := startWith(t, t.TempDir(), testRules, clock, nil)
	ctx := context.Background()
	huge := bytes.Repeat([]byte("q"), int(ts.nc.MaxPayload())-16)
	if _, err := ts.js.Publish(ctx, "segd.events.junk", huge); err != nil {
		t.Fatal(err)
	}
	ack, err := ts.js.Publish(ctx, "segd.events.web", []byte(`[{"user":"u1","event":"checkout","time":"2026-11-20T08:00:00Z"}]`))
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, ack.Sequence)
	st := ts.status(t)
	if st.NotBatches != 1 || st.DeadLetters != 1 || st.DeadLetterRecords != 1 || st.Events != 1 || st.LostToDLQ != 0 || st.GaveUp != 0 {
		t.Fatalf("status %+v", st)
	}
}
