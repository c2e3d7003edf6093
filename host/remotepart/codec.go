package remotepart

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/cluster"
	"github.com/segd/segd/ingest"
)

// Internal ops, one per Part method.
const (
	opIsMember       = "is-member"
	opMemberSince    = "member-since"
	opUserSegments   = "user-segments"
	opUserMembership = "user-memberships"
	opSegments       = "segments"
	opSegmentCount   = "segment-count"
	opStatus         = "status"
	opMemberView     = "member-view"
	opSegmentDetail  = "segment-detail"
	opSegmentStatic  = "segment-static"
	opSegmentPage    = "segment-page"
	opSegmentBitmaps = "segment-bitmaps"
	opUserNames      = "user-names"
	opHistory        = "history"
	opHistoryStart   = "history-start"
	opUnavailable    = "unavailable-segments"
	opEvents         = "analyze-events"
	opFunnel         = "analyze-funnel"
	opRetention      = "analyze-retention"
	opTrend          = "analyze-trend"
	opUserGet        = "user-get"
)

// slowOps may run long (they read every user or event of the partition):
// the owner runs few of them at once so that point lookups stay quick.
var slowOps = []string{opSegmentBitmaps, opEvents, opFunnel, opRetention, opTrend, opUserGet}

// Status codes of the context errors, which HTTP has none for: 499 (a
// client that went away, as nginx names it) and 504.
const (
	codeCanceled = 499
	codeDeadline = 504
)

// toStatus is the StatusError a handler answers for err, keeping its kind:
// the code of an *ingest.Error (and its field), 404 for ErrNotFound, 499
// and 504 for context errors, 500 for the rest. The reason is err's text.
func toStatus(err error) *cluster.StatusError {
	var se *cluster.StatusError
	var ce *ingest.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &ce) && ce.Code != "":
		code, cerr := strconv.Atoi(ce.Code)
		if cerr != nil {
			return &cluster.StatusError{Code: 500, Reason: fmt.Sprintf("error code %q: %v", ce.Code, err)}
		}
		return &cluster.StatusError{Code: code, Reason: err.Error(), Field: ce.Field}
	case errors.Is(err, ingest.ErrNotFound):
		return &cluster.StatusError{Code: 404, Reason: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &cluster.StatusError{Code: codeDeadline, Reason: err.Error()}
	case errors.Is(err, context.Canceled):
		return &cluster.StatusError{Code: codeCanceled, Reason: err.Error()}
	}
	return &cluster.StatusError{Code: 500, Reason: err.Error()}
}

// kindError is an error read from the wire that has the text it had on
// the owner and is (errors.Is) the sentinel of its kind.
type kindError struct {
	text string
	kind error
}

func (e *kindError) Error() string { return e.text }
func (e *kindError) Unwrap() error { return e.kind }

// fromStatus turns a StatusError back into the kind of error it was on the
// owner (toStatus): what the service maps to the same code.
func fromStatus(err error) error {
	var se *cluster.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case 404:
		return &kindError{se.Reason, ingest.ErrNotFound}
	case codeDeadline:
		return &kindError{se.Reason, context.DeadlineExceeded}
	case codeCanceled:
		return &kindError{se.Reason, context.Canceled}
	case 500:
		return errors.New(se.Reason)
	}
	return &ingest.Error{Code: strconv.Itoa(se.Code), Field: se.Field, Err: errors.New(se.Reason)}
}

// wireError is an error inside a reply body (a MemberView's per-segment
// error).
type wireError struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
	Field  string `json:"field,omitempty"`
}

func encodeError(err error) *wireError {
	if err == nil {
		return nil
	}
	se := toStatus(err)
	return &wireError{se.Code, se.Reason, se.Field}
}

func (w *wireError) decode() error {
	if w == nil {
		return nil
	}
	return fromStatus(&cluster.StatusError{Code: w.Code, Reason: w.Reason, Field: w.Field})
}

// wireTime is a time as Unix nanoseconds, 0 for the zero time; it comes
// back in the stream's location (the engine answers times in it).
func wireTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromWireTime(n int64, loc *time.Location) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).In(loc)
}

// Request bodies.
type (
	userSegment struct {
		User    string `json:"user"`
		Segment string `json:"segment,omitempty"`
	}
	memberViewRequest struct {
		User     string   `json:"user"`
		Segments []string `json:"segments"` // nil: every segment
	}
	historyRequest struct {
		Segment string `json:"segment"`
		From    int64  `json:"from"`
		To      int64  `json:"to"`
	}
	segmentsRequest struct {
		Segments []string `json:"segments"`
	}
)

// Reply bodies.
type (
	memberSince struct {
		Member bool  `json:"member"`
		Since  int64 `json:"since,omitempty"`
	}
	wireView struct {
		AsOf     api.AsOf          `json:"as_of"`
		Segments []wireSegmentView `json:"segments"`
		Unknown  []string          `json:"unknown"`
	}
	wireSegmentView struct {
		Segment  string     `json:"segment"`
		State    string     `json:"state"`
		Revision uint64     `json:"revision"`
		Served   bool       `json:"served"`
		Member   bool       `json:"member"`
		Since    int64      `json:"since,omitempty"`
		Err      *wireError `json:"err,omitempty"`
	}
)

func encodeView(v api.MemberView) wireView {
	w := wireView{AsOf: v.AsOf, Unknown: v.Unknown}
	if v.Segments != nil {
		w.Segments = make([]wireSegmentView, len(v.Segments))
	}
	for i, s := range v.Segments {
		w.Segments[i] = wireSegmentView{Segment: s.Segment, State: s.State, Revision: s.Revision, Served: s.Served,
			Member: s.Member, Since: wireTime(s.Since), Err: encodeError(s.Err)}
	}
	return w
}

func (w wireView) decode(loc *time.Location) api.MemberView {
	v := api.MemberView{AsOf: w.AsOf, Unknown: w.Unknown}
	if w.Segments != nil {
		v.Segments = make([]api.SegmentView, len(w.Segments))
	}
	for i, s := range w.Segments {
		v.Segments[i] = api.SegmentView{Segment: s.Segment, State: s.State, Revision: s.Revision, Served: s.Served,
			Member: s.Member, Since: fromWireTime(s.Since, loc), Err: s.Err.decode()}
	}
	return v
}

// decodeJSON decodes a body the other side encoded.
func decodeJSON(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("remotepart: decode %T: %w", v, err)
	}
	return nil
}

// encodeIDs writes ids as little-endian uint32s after a flag byte.
func encodeIDs(flag bool, ids []uint32) []byte {
	out := make([]byte, 1, 1+4*len(ids))
	if flag {
		out[0] = 1
	}
	for _, id := range ids {
		out = binary.LittleEndian.AppendUint32(out, id)
	}
	return out
}

func decodeIDs(data []byte) (bool, []uint32, error) {
	if len(data) == 0 || (len(data)-1)%4 != 0 {
		return false, nil, fmt.Errorf("remotepart: ids of %d bytes: want a flag byte and 4 bytes per id", len(data))
	}
	ids := make([]uint32, (len(data)-1)/4)
	for i := range ids {
		ids[i] = binary.LittleEndian.Uint32(data[1+4*i:])
	}
	return data[0] == 1, ids, nil
}

// encodeBitmaps writes the universe, the number of bitmaps, then each
// bitmap's length and roaring portable serialization.
func encodeBitmaps(bms []*roaring.Bitmap, universe uint32) ([]byte, error) {
	var buf bytes.Buffer
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:4], universe)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(bms)))
	buf.Write(hdr[:])
	for _, bm := range bms {
		bm.RunOptimize()
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], bm.GetSerializedSizeInBytes())
		buf.Write(n[:])
		if _, err := bm.WriteTo(&buf); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func decodeBitmaps(data []byte) ([]*roaring.Bitmap, uint32, error) {
	bad := func(format string, args ...any) ([]*roaring.Bitmap, uint32, error) {
		return nil, 0, fmt.Errorf("remotepart: bitmaps: "+format, args...)
	}
	if len(data) < 8 {
		return bad("%d bytes, want at least 8", len(data))
	}
	universe, count := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
	data = data[8:]
	if uint64(count)*8 > uint64(len(data)) {
		return bad("%d bitmaps in %d bytes", count, len(data))
	}
	out := make([]*roaring.Bitmap, count)
	for i := range out {
		if len(data) < 8 {
			return bad("bitmap %d: truncated", i)
		}
		n := binary.LittleEndian.Uint64(data)
		data = data[8:]
		if n > uint64(len(data)) {
			return bad("bitmap %d: %d bytes, %d left", i, n, len(data))
		}
		bm := roaring.New()
		if _, err := bm.ReadFrom(bytes.NewReader(data[:n])); err != nil {
			return bad("bitmap %d: %v", i, err)
		}
		out[i] = bm
		data = data[n:]
	}
	if len(data) != 0 {
		return bad("%d bytes past the last bitmap", len(data))
	}
	return out, universe, nil
}
