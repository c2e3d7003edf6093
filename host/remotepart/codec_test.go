package remotepart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

// TestBitmapsRoundTripAndRefuseDamage: bitmaps (empty, sparse, dense
// across blocks) come back equal with their universe; every truncation
// and a trailing byte are errors, never a panic or a wrong set.
func TestBitmapsRoundTripAndRefuseDamage(t *testing.T) {
	t.Parallel()
	dense := roaring.New()
	dense.AddRange(10, 200_000)
	sparse := roaring.BitmapOf(1, 70_000, 1<<20)
	in := []*roaring.Bitmap{roaring.New(), sparse, dense}
	data, err := encodeBitmaps(in, 300_000)
	if err != nil {
		t.Fatal(err)
	}
	out, u, err := decodeBitmaps(data)
	if err != nil || u != 300_000 || len(out) != len(in) {
		t.Fatalf("decode: %d bitmaps, universe %d, %v", len(out), u, err)
	}
	for i := range in {
		if !out[i].Equals(in[i]) {
			t.Errorf("bitmap %d: %d members, want %d", i, out[i].GetCardinality(), in[i].GetCardinality())
		}
	}
	for n := range len(data) {
		if _, _, err := decodeBitmaps(data[:n]); err == nil {
			t.Fatalf("%d of %d bytes decoded without an error", n, len(data))
		}
	}
	if _, _, err := decodeBitmaps(append(data, 0)); err == nil {
		t.Fatal("a trailing byte decoded without an error")
	}
}

// TestErrorsKeepTheirKind: what the owner's Part returns comes back as an
// error of the same kind, code, field and text.
func TestErrorsKeepTheirKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		is   error
		code string
	}{
		{&ingest.Error{Code: api.CodeBadRequest, Field: "steps", Err: errors.New("too many steps")}, nil, api.CodeBadRequest},
		{fmt.Errorf("segment %q: %w", "x", ingest.ErrNotFound), ingest.ErrNotFound, api.CodeNotFound},
		{&ingest.Error{Code: api.CodeUnavailable, Err: errors.New(`segment "x" is being rebuilt`)}, nil, api.CodeUnavailable},
		{&ingest.Error{Code: api.CodeConflict, Err: errors.New("revision moved")}, nil, api.CodeConflict},
		{fmt.Errorf("funnel: %w", context.DeadlineExceeded), context.DeadlineExceeded, ""},
		{context.Canceled, context.Canceled, ""},
		{errors.New("a bug"), nil, ""},
	} {
		got := fromStatus(toStatus(tc.err))
		if got.Error() != tc.err.Error() {
			t.Errorf("%v: came back as %q", tc.err, got)
		}
		if tc.is != nil && !errors.Is(got, tc.is) {
			t.Errorf("%v: came back as %v, not %v", tc.err, got, tc.is)
		}
		var want, have *ingest.Error
		if errors.As(tc.err, &want) {
			if !errors.As(got, &have) || have.Code != want.Code || have.Field != want.Field {
				t.Errorf("%v: came back as %#v", tc.err, got)
			}
		} else if errors.As(got, &have) {
			t.Errorf("%v: came back coded %s", tc.err, have.Code)
		}
		if tc.code == "" && tc.is == nil && strings.Contains(fmt.Sprintf("%T", got), "ingest") {
			t.Errorf("%v: a bug came back as %T", tc.err, got)
		}
	}
}
