package host

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
)

// TestUploadInvalidUTF8IDsCounted publishes an upload straight to the
// events stream, as natscli can, with ids that are not valid UTF-8: they
// are refused, counted as invalid items with the first error kept, and
// never become one U+FFFD user; the valid ids are applied.
func TestUploadInvalidUTF8IDsCounted(t *testing.T) {
	t.Parallel()
	ts := startFeedServer(t, t.TempDir(), 0)
	ctx := context.Background()
	before, err := ts.client.Segment(ctx, "young_men")
	if err != nil {
		t.Fatal(err)
	}
	ack, err := ts.js.Publish(ctx, bus.ControlUploadSubject,
		[]byte("{\"segment\":\"newsletter\",\"users\":[\"ok-1\",\"x\xff\",\"x\xfe\",\"ok-2\"],\"replace\":true}"))
	if err != nil {
		t.Fatal(err)
	}
	ts.waitApplied(t, ack.Sequence)
	st, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.InvalidItems != 2 || !strings.Contains(st.FirstInvalid, "users[1]") || !strings.Contains(st.FirstInvalid, "UTF-8") {
		t.Fatalf("invalid items %d, first %q; want 2, naming users[1]", st.InvalidItems, st.FirstInvalid)
	}
	ex, err := ts.client.Export(ctx, "newsletter", api.FormatIDs)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(ex.Users)); !slices.Equal(got, []string{"ok-1", "ok-2"}) {
		t.Fatalf("members %q, want the two valid ids", got)
	}
	// The uploaded users have no profile: the profile rule takes its
	// value for an empty profile without judging (or failing on) each.
	g, err := ts.client.Segment(ctx, "young_men")
	if err != nil {
		t.Fatal(err)
	}
	if g.EvalErrors != before.EvalErrors || g.Size != 0 {
		t.Fatalf("young_men after an upload of users without profiles: %d members, %d eval errors (%s)", g.Size, g.EvalErrors, g.LastEvalError)
	}
}
