package bus

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// TestDecodeUploadRefusesInvalidUTF8 decodes uploads whose ids are not
// valid UTF-8, raw or as escaped lone surrogates: encoding/json would turn
// each into U+FFFD, making different ids one user. They are skipped and
// counted with the first error; the others are applied.
func TestDecodeUploadRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	up, err := DecodeUpload([]byte("{\"segment\":\"s\",\"users\":[\"ok1\",\"a\xff\",\"a\\udc00\",\"a\xfe\",\"ok2\"],\"replace\":true}"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(up.Users, []string{"ok1", "ok2"}) || !up.Replace {
		t.Fatalf("users %q, replace %v; want the two valid ids", up.Users, up.Replace)
	}
	if up.Invalid != 3 || !strings.Contains(up.FirstInvalid, "users[1]") || !strings.Contains(up.FirstInvalid, "UTF-8") {
		t.Fatalf("invalid %d, first %q", up.Invalid, up.FirstInvalid)
	}
	// An empty id cannot be a user either.
	up, err = DecodeUpload([]byte(`{"segment":"s","users":["","x"]}`))
	if err != nil || up.Invalid != 1 || !slices.Equal(up.Users, []string{"x"}) {
		t.Fatalf("empty id: %+v %v", up, err)
	}
}

// TestUploadRefusesBadIDsAndEmptyReplace: an upload endpoint request with
// an id that is not valid UTF-8 is a 400 naming it; a replace with no users
// is a 400 unless allow_empty says so, which then empties the segment.
func TestUploadRefusesBadIDsAndEmptyReplace(t *testing.T) {
	t.Parallel()
	st := newMemStore(10, map[string]float64{"newsletter": 0}, rand.New(rand.NewPCG(1, 2)))
	st.static["newsletter"] = true
	c := segEnvWith(t, st, segEnvOptions{})
	ctx := context.Background()
	if _, err := c.Upload(ctx, "newsletter", []string{"a", "b"}, api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	// Raw bytes that are not UTF-8 are refused for any request, before
	// decoding, at their byte offset (bus/service.go).
	raw := "{\"segment\":\"newsletter\",\"users\":[\"ok\",\"bad\xff\"],\"mode\":\"append\"}"
	if _, err := c.Request(ctx, api.SubjectSegmentUpload, []byte(raw)); !errors.As(err, &ce) || ce.Code != api.CodeBadRequest ||
		!strings.Contains(ce.Description, "not valid UTF-8 (byte 42)") {
		t.Errorf("%q: %v, want a 400 naming byte 42", raw, err)
	}
	// An escaped lone surrogate is valid JSON text but decodes to U+FFFD:
	// the upload check names the id.
	body := `{"segment":"newsletter","users":["ok","bad\udc00"],"mode":"append"}`
	if _, err := c.Request(ctx, api.SubjectSegmentUpload, []byte(body)); !errors.As(err, &ce) || ce.Code != api.CodeBadRequest ||
		ce.Field != "users" || !strings.Contains(ce.Description, `"users"[1]`) {
		t.Errorf("%q: %v, want a 400 naming users[1]", body, err)
	}
	_, err := c.Upload(ctx, "newsletter", nil, api.UploadReplace)
	if !errors.As(err, &ce) || ce.Code != api.CodeBadRequest || ce.Field != "users" || !strings.Contains(ce.Description, "allow_empty") {
		t.Fatalf("empty replace: %v, want a 400 that names allow_empty", err)
	}
	if _, err := c.Request(ctx, api.SubjectSegmentUpload, []byte(`{"segment":"newsletter","users":[],"mode":"replace"}`)); !errors.As(err, &ce) || ce.Code != api.CodeBadRequest {
		t.Fatalf("empty replace by request: %v", err)
	}
	if got := names(st, "newsletter"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("refused uploads changed the segment: %v", got)
	}
	r, err := c.Upload(ctx, "newsletter", nil, api.UploadReplace, client.AllowEmpty())
	if err != nil || r.Size != 0 || !r.Applied {
		t.Fatalf("empty replace allowed: %+v %v", r, err)
	}
	if got := names(st, "newsletter"); len(got) != 0 {
		t.Fatalf("after an allowed empty replace: %v", got)
	}
}

// TestUploadAcceptedBeforeApplied holds the apply: the upload's reply says
// it is stored and not applied yet, with its sequence, instead of failing
// (the CLI printed "context deadline exceeded" for an upload that was then
// applied). Its parts keep their order, and it is applied once released.
func TestUploadAcceptedBeforeApplied(t *testing.T) {
	t.Parallel()
	st := newMemStore(10, map[string]float64{"newsletter": 0}, rand.New(rand.NewPCG(1, 2)))
	st.static["newsletter"] = true
	hold := make(chan struct{})
	c := segEnvWith(t, st, segEnvOptions{hold: hold, uploadWait: 30 * time.Second})
	// The client gives the whole upload 300ms: the server answers within
	// it, before the client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r, err := c.Upload(ctx, "newsletter", []string{"x", "y"}, api.UploadReplace)
	if err != nil {
		t.Fatalf("an upload stored but not applied in time: %v", err)
	}
	if r.Applied || r.Seq == 0 {
		t.Fatalf("reply %+v, want applied false with the sequence", r)
	}
	close(hold)
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := st.SegmentCount("newsletter"); n != 2; n, _ = st.SegmentCount("newsletter") {
		if time.Now().After(deadline) {
			t.Fatal("the accepted upload was never applied")
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
	}
	r, err = c.Upload(context.Background(), "newsletter", []string{"z"}, api.UploadAppend)
	if err != nil || !r.Applied || r.Size != 3 {
		t.Fatalf("upload applied in time: %+v %v", r, err)
	}
}

// FuzzDecodeUpload: no input panics DecodeUpload; what it accepts holds
// only ids an upload may hold, and every id decoded is either kept or
// counted as invalid.
func FuzzDecodeUpload(f *testing.F) {
	f.Add([]byte(`{"segment":"s","users":["u1","u2"],"replace":true}`))
	f.Add([]byte("{\"segment\":\"s\",\"users\":[\"a\xff\",\"\",\"b\"]}"))
	f.Add([]byte(`{"segment":"s","users":["a\udc00","\ufffd","\u00e9"]}`))
	f.Add([]byte(`{"segment":"","users":[]}`))
	f.Add([]byte(`{"segment":"s","users":null,"extra":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		up, err := DecodeUpload(data)
		if err != nil {
			if !errors.Is(err, ErrNotBatch) {
				t.Fatalf("error %v is not ErrNotBatch", err)
			}
			return
		}
		for _, u := range up.Users {
			if why := userIDProblem(u); why != "" {
				t.Fatalf("kept id %q, which %s", u, why)
			}
		}
		var raw struct{ Users []string }
		if json.Unmarshal(data, &raw) == nil && len(raw.Users) != len(up.Users)+up.Invalid {
			t.Fatalf("%d ids decoded, %d kept + %d invalid", len(raw.Users), len(up.Users), up.Invalid)
		}
		if (up.Invalid > 0) != (up.FirstInvalid != "") {
			t.Fatalf("invalid %d, first %q", up.Invalid, up.FirstInvalid)
		}
	})
}
