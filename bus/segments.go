package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/setexpr"
)

// SegmentStore answers the segment endpoints; the host implements it. Its
// methods are called from many goroutines and must not wait for ingest.
type SegmentStore interface {
	// SegmentDetail describes one segment for segment.get.
	SegmentDetail(segment string) (api.SegmentGetReply, error)
	// SegmentStatic reports whether a segment takes uploads.
	SegmentStatic(segment string) (bool, error)
	// SegmentPage returns up to limit members with dense ids >= from, in
	// ascending order, and whether more follow.
	SegmentPage(segment string, from uint32, limit int) (ids []uint32, more bool, err error)
	// SegmentBitmaps returns copies of the segments' members (dense ids),
	// taken at one instant, and the number of users seen then (the universe
	// of negation).
	SegmentBitmaps(segments []string) ([]*roaring.Bitmap, uint32, error)
	// UserNames returns the external ids of dense ids, or why it cannot
	// (a partition elsewhere that did not answer).
	UserNames(ids []uint32) ([]string, error)
	// History returns a segment's days from the day of from to the day of
	// to, inclusive.
	History(segment string, from, to time.Time) ([]api.HistoryDay, error)
	// SegmentCount returns a segment's size.
	SegmentCount(segment string) (uint64, error)
	// Location is the time zone of calendar days; Now reads segd's clock.
	Location() *time.Location
	Now() time.Time
}

// SegmentOptions configures SegmentEndpoints.
type SegmentOptions struct {
	// JetStream publishes uploads and stores large exports; without it,
	// segment.upload and large exports answer 503.
	JetStream jetstream.JetStream
	// WaitApplied returns once the engine has applied the events stream
	// sequence seq (segment.upload replies only then).
	WaitApplied func(ctx context.Context, seq uint64) error
	// MaxPayload is the largest reply or upload message (default: the
	// connection's max payload).
	MaxPayload int
	// ExportTTL is how long an export stays in the Object Store (default
	// one hour).
	ExportTTL time.Duration
	// UploadTimeout bounds the wait for an upload to be stored and applied
	// (default 30s; a request's wait_ms may ask for less): past it the
	// reply says the upload is stored but not applied yet ("applied":
	// false), which it then is, in order.
	UploadTimeout time.Duration
}

// SegmentQuerier is implemented by a SegmentStore that evaluates a set
// expression itself, such as one that merges partitions: its ids are not
// one range from 0, so "!" cannot be taken over the universe of
// SegmentBitmaps' count and must be taken within each partition.
type SegmentQuerier interface {
	// SegmentQuery returns the users (dense ids, as SegmentPage's) that q
	// selects, taken at one instant.
	SegmentQuery(ctx context.Context, q *setexpr.Expr) (*roaring.Bitmap, error)
}

// Paging and result limits.
const (
	DefaultPageLimit = 1000
	MaxPageLimit     = 10000
)

// ControlUploadSubject is where segment.upload publishes uploads; the events
// stream captures segd.control.> so that a replay applies them again.
const ControlUploadSubject = "segd.control.upload"

// controlUpload is the wire form of a StaticUpload in the events stream.
type controlUpload struct {
	Segment string   `json:"segment"`
	Users   []string `json:"users"`
	Replace bool     `json:"replace"`
}

// DecodeUpload decodes a message published on ControlUploadSubject. An id
// that is empty or not valid UTF-8 is refused: it is left out of Users and
// counted in Invalid, with the first described in FirstInvalid.
func DecodeUpload(data []byte) (*StaticUpload, error) {
	var c controlUpload
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: upload: %v", ErrNotBatch, err)
	}
	if c.Segment == "" {
		return nil, fmt.Errorf("%w: upload without a segment", ErrNotBatch)
	}
	up := &StaticUpload{Segment: c.Segment, Users: c.Users, Replace: c.Replace}
	if badUserID(c.Users) < 0 {
		return up, nil
	}
	up.Users = make([]string, 0, len(c.Users))
	for i, u := range c.Users {
		if why := userIDProblem(u); why != "" {
			if up.Invalid == 0 {
				up.FirstInvalid = fmt.Sprintf("upload to %s: users[%d] %s", c.Segment, i, why)
			}
			up.Invalid++
			continue
		}
		up.Users = append(up.Users, u)
	}
	return up, nil
}

// badUserID returns the index of the first id userIDProblem refuses, or -1.
func badUserID(users []string) int {
	for i, u := range users {
		if userIDProblem(u) != "" {
			return i
		}
	}
	return -1
}

// userIDProblem says why an uploaded id cannot be a user, or "". JSON
// decoding turns invalid UTF-8, raw or as an escaped lone surrogate, into
// U+FFFD: two different ids would become one user, so an id holding U+FFFD
// is refused.
func userIDProblem(u string) string {
	switch {
	case u == "":
		return "is empty"
	case strings.ContainsRune(u, utf8.RuneError):
		return "is not valid UTF-8 (or holds U+FFFD, which invalid UTF-8 decodes to)"
	}
	return ""
}

// SegmentEndpoints returns segment.get, segment.members, segment.export,
// segment.query, segment.history and segment.upload, for
// ServiceOptions.Endpoints.
func SegmentEndpoints(st SegmentStore, opts SegmentOptions) []Endpoint {
	if opts.ExportTTL <= 0 {
		opts.ExportTTL = time.Hour
	}
	if opts.UploadTimeout <= 0 {
		opts.UploadTimeout = 30 * time.Second
	}
	if opts.MaxPayload <= 0 && opts.JetStream != nil {
		opts.MaxPayload = int(opts.JetStream.Conn().MaxPayload())
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 1 << 20
	}
	h := &segmentHandlers{st: st, opts: opts}
	return []Endpoint{
		{
			Name: "segment_get", Subject: api.SubjectSegmentGet,
			Description: "A segment's definition (YAML), kind, status (active, rebuilding, failed with error), size and when its membership last changed.",
			Request:     `{"segment":"vip"}`,
			Reply:       `{"id":"vip","kind":"attribute","size":575,"status":"active","definition":"id: vip\nprofile: tier == \"vip\"\n","updated":"2026-11-28T10:15:00Z"}`,
			Parse:       h.parseGet,
		},
		{
			Name: "segment_members", Subject: api.SubjectSegmentMembers,
			Description: "One page of a segment's members (external ids); pass the reply's next as cursor for the following page.",
			Request:     `{"segment":"vip","limit":2}`,
			Reply:       `{"users":["u00012","u00047"],"next":"1b"}`,
			Parse:       h.parseMembers,
		},
		{
			Name: "segment_export", Subject: api.SubjectSegmentExport, Slow: true,
			Description: "A whole segment as ids or a roaring bitmap (portable format, base64); too large for one reply, it is put in Object Store bucket SEGD_EXPORTS and named.",
			Request:     `{"segment":"vip","format":"ids"}`,
			Reply:       `{"segment":"vip","format":"ids","count":2,"users":["u00012","u00047"]}`,

			ParseContext: h.parseExport, Timeout: exportTimeout,
		},
		{
			Name: "segment_query", Subject: api.SubjectSegmentQuery, Slow: true,
			Description: "Set algebra over segments: ! (not, over every user seen) binds tightest, then &, then - (and not), then |; parentheses group.",
			Request:     `{"expr":"vip & !churned | new_7d","count_only":true}`,
			Reply:       `{"count":412}`,

			ParseContext: h.parseQuery,
		},
		{
			Name: "segment_history", Subject: api.SubjectSegmentHistory,
			Description: "A segment's size, entries and exits per calendar day, from and to inclusive (YYYY-MM-DD; default the last 30 days).",
			Request:     `{"segment":"vip","from":"2026-11-26","to":"2026-11-28"}`,
			Reply:       `{"segment":"vip","days":[{"day":"2026-11-26","size":560,"entered":4,"left":1},{"day":"2026-11-27","size":570,"entered":12,"left":2},{"day":"2026-11-28","size":575,"entered":5,"left":0}]}`,
			Parse:       h.parseHistory,
		},
		{
			Name: "segment_upload", Subject: api.SubjectSegmentUpload, Slow: true,
			Description: "Replace or extend a static segment's members; replies once applied, with the new size (or, past wait_ms, that it is stored and being applied: applied false). Uploads go through the events stream, so a restart replays them. An empty replace needs allow_empty.",
			Request:     `{"segment":"newsletter","users":["u1","u2"],"mode":"replace"}`,
			Reply:       `{"segment":"newsletter","size":2,"seq":912,"applied":true}`,
			Parse:       h.parseUpload,
		},
	}
}

type segmentHandlers struct {
	st   SegmentStore
	opts SegmentOptions
}

func requireSegment(seg string) *api.ErrorDetail {
	if seg == "" {
		return badField("segment", `"segment" is required; want e.g. {"segment":"vip"}`)
	}
	return nil
}

func (h *segmentHandlers) parseGet(data []byte) (func() (any, error), *api.ErrorDetail) {
	var r api.SegmentRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return nil, bad
	}
	if bad := requireSegment(r.Segment); bad != nil {
		return nil, bad
	}
	return func() (any, error) { return h.st.SegmentDetail(r.Segment) }, nil
}

// Cursors are dense ids in base 36: opaque to callers, stable while segd
// runs. A restart may renumber users, so a cursor should not outlive one.
func encodeCursor(id uint32) string { return strconv.FormatUint(uint64(id), 36) }

func decodeCursor(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 36, 32)
	return uint32(v), err
}

func pageLimit(limit int) (int, *api.ErrorDetail) {
	return requestLimit(limit, DefaultPageLimit, MaxPageLimit)
}

// requestLimit checks a request's "limit": 0 means def, otherwise it must
// be between 1 and max.
func requestLimit(limit, def, max int) (int, *api.ErrorDetail) {
	switch {
	case limit == 0:
		return def, nil
	case limit < 0 || limit > max:
		return 0, badField("limit", fmt.Sprintf(`"limit" must be between 1 and %d`, max))
	}
	return limit, nil
}

func (h *segmentHandlers) parseMembers(data []byte) (func() (any, error), *api.ErrorDetail) {
	var r api.SegmentMembersRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return nil, bad
	}
	if bad := requireSegment(r.Segment); bad != nil {
		return nil, bad
	}
	limit, bad := pageLimit(r.Limit)
	if bad != nil {
		return nil, bad
	}
	var from uint32
	if r.Cursor != "" {
		var err error
		if from, err = decodeCursor(r.Cursor); err != nil {
			return nil, badField("cursor", fmt.Sprintf(`"cursor" %q is not a cursor segd gave; pass the "next" of the previous page, or nothing for the first`, r.Cursor))
		}
	}
	return func() (any, error) {
		ids, more, err := h.st.SegmentPage(r.Segment, from, limit)
		if err != nil {
			return nil, err
		}
		users, err := h.st.UserNames(ids)
		if err != nil {
			return nil, err
		}
		rep := api.SegmentMembersReply{Users: users}
		if rep.Users == nil {
			rep.Users = []string{}
		}
		if more && len(ids) > 0 {
			rep.Next = encodeCursor(ids[len(ids)-1] + 1)
		}
		return rep, nil
	}, nil
}

func (h *segmentHandlers) parseExport(data []byte) (Work, *api.ErrorDetail) {
	var r api.SegmentExportRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return nil, bad
	}
	if bad := requireSegment(r.Segment); bad != nil {
		return nil, bad
	}
	switch r.Format {
	case "":
		r.Format = api.FormatIDs
	case api.FormatIDs, api.FormatRoaring:
	default:
		return nil, badField("format", fmt.Sprintf(`"format" must be %q or %q, not %q`, api.FormatIDs, api.FormatRoaring, r.Format))
	}
	return func(ctx context.Context) (any, error) { return h.export(ctx, r) }, nil
}

// exportTimeout is an export's deadline: storing a large one in the
// Object Store takes a while.
const exportTimeout = 2 * time.Minute

// exportHeadroom is kept free below the max payload for the reply's
// framing, so that an inline reply never fails to publish.
const exportHeadroom = 1024

func (h *segmentHandlers) export(ctx context.Context, r api.SegmentExportRequest) (any, error) {
	bms, _, err := h.st.SegmentBitmaps([]string{r.Segment})
	if err != nil {
		return nil, err
	}
	bm := bms[0]
	rep := api.SegmentExportReply{Segment: r.Segment, Format: r.Format, Count: bm.GetCardinality()}
	var object []byte
	if r.Format == api.FormatRoaring {
		bm.RunOptimize()
		b, err := bm.ToBytes()
		if err != nil {
			return nil, err
		}
		rep.Roaring = b
		if rep.Roaring == nil {
			rep.Roaring = []byte{}
		}
		object = b
	} else {
		if rep.Users, err = h.st.UserNames(bm.ToArray()); err != nil {
			return nil, err
		}
		if rep.Users == nil {
			rep.Users = []string{}
		}
	}
	inline, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	if len(inline) <= h.opts.MaxPayload-exportHeadroom {
		return json.RawMessage(inline), nil
	}
	if r.Format == api.FormatIDs {
		object = []byte(strings.Join(rep.Users, "\n") + "\n")
	}
	rep.Users, rep.Roaring = nil, nil
	if h.opts.JetStream == nil {
		return nil, &Error{Code: api.CodeUnavailable, Err: fmt.Errorf("the export (%d bytes) is larger than one reply and this segd has no JetStream for the Object Store", len(inline))}
	}
	obs, err := EnsureExportBucket(ctx, h.opts.JetStream, h.opts.ExportTTL)
	if err != nil {
		return nil, &Error{Code: api.CodeUnavailable, Err: err}
	}
	now := time.Now()
	rep.Bucket = api.ExportBucket
	rep.Object = fmt.Sprintf("%s/%s/%s-%s", r.Segment, r.Format, now.UTC().Format("20060102T150405Z"), nuid.Next())
	rep.Size = uint64(len(object))
	rep.Expires = now.Add(h.opts.ExportTTL).UTC().Format(time.RFC3339)
	meta := jetstream.ObjectMeta{Name: rep.Object, Description: fmt.Sprintf("segd export of %s (%d users, %s)", r.Segment, rep.Count, r.Format),
		Metadata: map[string]string{"segment": r.Segment, "format": r.Format, "count": strconv.FormatUint(rep.Count, 10)},
		// Chunks must fit the server's max payload (the default is 128 KiB).
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(min(128<<10, h.opts.MaxPayload-exportHeadroom))}}
	if _, err := obs.Put(ctx, meta, bytes.NewReader(object)); err != nil {
		return nil, fmt.Errorf("storing the export in %s: %w", api.ExportBucket, err)
	}
	return rep, nil
}

// EnsureExportBucket creates (or opens) the Object Store bucket of large
// exports, whose objects expire after ttl.
func EnsureExportBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.ObjectStore, error) {
	obs, err := js.ObjectStore(ctx, api.ExportBucket)
	if err == nil {
		return obs, nil
	}
	obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: api.ExportBucket,
		Description: "segd segment exports too large for one reply", TTL: ttl, Storage: jetstream.FileStorage})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.ObjectStore(ctx, api.ExportBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", api.ExportBucket, err)
	}
	return obs, nil
}

func (h *segmentHandlers) parseQuery(data []byte) (Work, *api.ErrorDetail) {
	var r api.SegmentQueryRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return nil, bad
	}
	if strings.TrimSpace(r.Expr) == "" {
		return nil, badField("expr", `"expr" is required; want e.g. {"expr":"vip & !churned"}`)
	}
	limit, bad := pageLimit(r.Limit)
	if bad != nil {
		return nil, bad
	}
	q, err := setexpr.Parse(r.Expr)
	if err != nil {
		return nil, badField("expr", `"expr": `+err.Error())
	}
	return func(ctx context.Context) (any, error) {
		res, err := h.query(ctx, q)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				// Point at the unknown segment's place in the expression.
				for _, s := range q.Names() {
					if _, cerr := h.st.SegmentCount(s); cerr != nil {
						return nil, fmt.Errorf(`"expr": column %d: %w`, q.Column(s), cerr)
					}
				}
			}
			return nil, err
		}
		rep := api.SegmentQueryReply{Count: res.GetCardinality()}
		if !r.CountOnly {
			ids := make([]uint32, 0, min(rep.Count, uint64(limit)))
			it := res.Iterator()
			for it.HasNext() && len(ids) < limit {
				ids = append(ids, it.Next())
			}
			users, err := h.st.UserNames(ids)
			if err != nil {
				return nil, err
			}
			rep.Users = users
			if rep.Users == nil {
				rep.Users = []string{}
			}
			rep.Truncated = rep.Count > uint64(len(ids))
		}
		return rep, nil
	}, nil
}

// parseDay reads YYYY-MM-DD in loc, or RFC 3339.
func parseDay(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want a date like 2026-11-28 (or an RFC 3339 time)")
	}
	return t, nil
}

// maxHistoryRange bounds segment.history: the engine keeps 400 days.
const maxHistoryRange = 400

func (h *segmentHandlers) parseHistory(data []byte) (func() (any, error), *api.ErrorDetail) {
	var r api.SegmentHistoryRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return nil, bad
	}
	if bad := requireSegment(r.Segment); bad != nil {
		return nil, bad
	}
	loc := h.st.Location()
	to := h.st.Now().In(loc)
	var err error
	if r.To != "" {
		if to, err = parseDay(r.To, loc); err != nil {
			return nil, badField("to", fmt.Sprintf(`"to" %q: %v`, r.To, err))
		}
	}
	from := to.AddDate(0, 0, -29)
	if r.From != "" {
		if from, err = parseDay(r.From, loc); err != nil {
			return nil, badField("from", fmt.Sprintf(`"from" %q: %v`, r.From, err))
		}
	}
	if from.After(to) {
		return nil, badField("from", fmt.Sprintf(`"from" (%s) is after "to" (%s)`, from.In(loc).Format(time.DateOnly), to.In(loc).Format(time.DateOnly)))
	}
	if to.Sub(from) > maxHistoryRange*24*time.Hour {
		return nil, badField("from", fmt.Sprintf("at most %d days at a time", maxHistoryRange))
	}
	return func() (any, error) {
		days, err := h.st.History(r.Segment, from, to)
		if days == nil {
			days = []api.HistoryDay{}
		}
		rep := api.SegmentHistoryReply{Segment: r.Segment, Days: days}
		if hs, ok := h.st.(interface{ HistoryStart(string) string }); ok && err == nil {
			rep.HistoryStart = hs.HistoryStart(r.Segment)
		}
		return rep, err
	}, nil
}

func (h *segmentHandlers) parseUpload(data []byte) (func() (any, error), *api.ErrorDetail) {
	var r api.SegmentUploadRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return nil, bad
	}
	if bad := requireSegment(r.Segment); bad != nil {
		return nil, bad
	}
	switch r.Mode {
	case api.UploadReplace, api.UploadAppend:
	case "":
		return nil, badField("mode", `"mode" is required: "replace" (the users become the members) or "append" (they are added)`)
	default:
		return nil, badField("mode", fmt.Sprintf(`"mode" must be "replace" or "append", not %q`, r.Mode))
	}
	if len(r.Users) == 0 && (r.Mode == api.UploadAppend || !r.AllowEmpty) {
		if r.Mode == api.UploadReplace {
			return nil, badField("users", `"users" is empty: a replace with no users would empty the segment; to empty it, send "allow_empty":true`)
		}
		return nil, badField("users", `"users" is required; want e.g. {"users":["u1","u2"]}`)
	}
	if i := badUserID(r.Users); i >= 0 {
		return nil, badField("users", fmt.Sprintf(`"users"[%d] %s`, i, userIDProblem(r.Users[i])))
	}
	if r.WaitMs < 0 {
		return nil, badField("wait_ms", fmt.Sprintf(`"wait_ms" must be 0 (the default, %d) or more (at most %d is waited)`, h.opts.UploadTimeout.Milliseconds(), h.opts.UploadTimeout.Milliseconds()))
	}
	return func() (any, error) { return h.upload(r) }, nil
}

func (h *segmentHandlers) upload(r api.SegmentUploadRequest) (any, error) {
	static, err := h.st.SegmentStatic(r.Segment)
	if err != nil {
		return nil, err
	}
	if !static {
		return nil, &Error{Code: api.CodeBadRequest, Field: "segment",
			Err: fmt.Errorf("segment %q has a rule; only static segments (static: true) take uploads", r.Segment)}
	}
	if h.opts.JetStream == nil || h.opts.WaitApplied == nil {
		return nil, &Error{Code: api.CodeUnavailable, Err: errors.New("this segd cannot take uploads (no JetStream)")}
	}
	msg, err := json.Marshal(controlUpload{Segment: r.Segment, Users: r.Users, Replace: r.Mode == api.UploadReplace})
	if err != nil {
		return nil, err
	}
	if len(msg) > h.opts.MaxPayload {
		per := max(1, len(r.Users)*(h.opts.MaxPayload-200)/len(msg))
		return nil, &Error{Code: api.CodeTooLarge, Field: "users", Err: fmt.Errorf(
			"%d users are too many for one message (%d bytes, max %d); split them into uploads of at most about %d users: the first with mode %q, the rest with mode \"append\" (the Go client's Upload does this)",
			len(r.Users), len(msg), h.opts.MaxPayload, per, r.Mode)}
	}
	wait := h.opts.UploadTimeout
	if r.WaitMs > 0 && int64(r.WaitMs) < wait.Milliseconds() {
		wait = time.Duration(r.WaitMs) * time.Millisecond
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.UploadTimeout)
	defer cancel()
	ack, err := h.opts.JetStream.Publish(ctx, ControlUploadSubject, msg)
	if err != nil {
		return nil, &Error{Code: api.CodeUnavailable, Err: fmt.Errorf("storing the upload in the events stream failed (it may or may not be stored: check the segment before sending it again): %w", err)}
	}
	// Stored, so it will be applied, in order, also after a restart: from
	// here the reply is a success, applied or not yet.
	wctx, wcancel := context.WithDeadline(context.Background(), start.Add(wait))
	defer wcancel()
	applied := h.opts.WaitApplied(wctx, ack.Sequence) == nil
	n, err := h.st.SegmentCount(r.Segment)
	return api.SegmentUploadReply{Segment: r.Segment, Size: n, Seq: ack.Sequence, Applied: applied}, err
}

// query evaluates q over the store: by the store itself when it is a
// SegmentQuerier, else over its bitmaps with "!" relative to the users seen.
func (h *segmentHandlers) query(ctx context.Context, q *setexpr.Expr) (*roaring.Bitmap, error) {
	if qs, ok := h.st.(SegmentQuerier); ok {
		return qs.SegmentQuery(ctx, q)
	}
	bms, universe, err := h.st.SegmentBitmaps(q.Names())
	if err != nil {
		return nil, err
	}
	m := make(map[string]*roaring.Bitmap, len(bms))
	for i, s := range q.Names() {
		m[s] = bms[i]
	}
	return q.Eval(ctx, m, uint64(universe))
}
