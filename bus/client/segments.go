package client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// IsTooLarge reports whether err is a 413: the request or its reply does
// not fit in one NATS message.
func IsTooLarge(err error) bool { return hasCode(err, api.CodeTooLarge) }

// IsInternal reports whether err is a 500: a failure inside segd.
func IsInternal(err error) bool { return hasCode(err, api.CodeInternal) }

// MemberCheck is IsMember with the time the user entered the segment.
func (c *Client) MemberCheck(ctx context.Context, user, segment string) (*api.MemberCheckReply, error) {
	var r api.MemberCheckReply
	if err := c.call(ctx, api.SubjectMemberCheck, api.MemberCheckRequest{User: user, Segment: segment}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// UserMemberships returns the user's segments, ascending, with the time the
// user entered each.
func (c *Client) UserMemberships(ctx context.Context, user string) ([]api.Membership, error) {
	var r api.MemberSegmentsReply
	err := c.call(ctx, api.SubjectMemberSegments, api.MemberSegmentsRequest{User: user}, &r)
	return r.Memberships, err
}

// Segment describes one segment: definition, status, size, last change.
func (c *Client) Segment(ctx context.Context, segment string) (*api.SegmentGetReply, error) {
	var r api.SegmentGetReply
	if err := c.call(ctx, api.SubjectSegmentGet, api.SegmentRequest{Segment: segment}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Members returns one page of a segment's members: pass "" as cursor for
// the first page and the reply's Next for the following ones; limit 0 is
// the server's default (1000).
func (c *Client) Members(ctx context.Context, segment, cursor string, limit int) (*api.SegmentMembersReply, error) {
	var r api.SegmentMembersReply
	if err := c.call(ctx, api.SubjectSegmentMembers, api.SegmentMembersRequest{Segment: segment, Cursor: cursor, Limit: limit}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// EachMember pages through a whole segment, calling fn with each page;
// an error from fn stops it. Users who enter or leave meanwhile may or may
// not be seen; every user who stays a member is seen exactly once.
func (c *Client) EachMember(ctx context.Context, segment string, limit int, fn func(users []string) error) error {
	cursor := ""
	for {
		page, err := c.Members(ctx, segment, cursor, limit)
		if err != nil {
			return err
		}
		if len(page.Users) > 0 {
			if err := fn(page.Users); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		cursor = page.Next
	}
}

// Export is a whole segment, as segment.export returned it and, when the
// reply named an Object Store object, as fetched from there.
type Export struct {
	Segment string
	Format  string
	Count   uint64
	// Users holds the ids for format "ids".
	Users []string
	// Roaring holds the portable serialization for format "roaring".
	Roaring []byte
	// Object is the Object Store object it came through, if any.
	Object string
}

// Bitmap decodes Roaring.
func (e *Export) Bitmap() (*roaring.Bitmap, error) {
	bm := roaring.New()
	if len(e.Roaring) == 0 {
		return bm, nil
	}
	if _, err := bm.ReadFrom(bytes.NewReader(e.Roaring)); err != nil {
		return nil, fmt.Errorf("segd export of %s: decoding the bitmap: %w", e.Segment, err)
	}
	return bm, nil
}

// ExportOption configures Export.
type ExportOption func(*exportConfig)

type exportConfig struct {
	progress func(done, total uint64)
}

// WithProgress has Export report the bytes fetched from the Object Store as
// they arrive (an inline reply reports nothing).
func WithProgress(fn func(done, total uint64)) ExportOption {
	return func(c *exportConfig) { c.progress = fn }
}

// Export fetches a whole segment in format api.FormatIDs or
// api.FormatRoaring. A reply too large for one message comes through the
// JetStream Object Store: Export fetches it transparently (and deletes
// nothing: objects expire on their own).
func (c *Client) Export(ctx context.Context, segment, format string, opts ...ExportOption) (*Export, error) {
	var cfg exportConfig
	for _, o := range opts {
		o(&cfg)
	}
	var r api.SegmentExportReply
	// The server may need a while to write a large object.
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(c.timeout, 2*time.Minute))
		defer cancel()
	}
	if err := c.call(ctx, api.SubjectSegmentExport, api.SegmentExportRequest{Segment: segment, Format: format}, &r); err != nil {
		return nil, err
	}
	ex := &Export{Segment: r.Segment, Format: r.Format, Count: r.Count, Users: r.Users, Roaring: r.Roaring}
	if r.Object == "" {
		if ex.Format == api.FormatIDs && ex.Users == nil {
			ex.Users = []string{}
		}
		return ex, nil
	}
	ex.Object = r.Object
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	obs, err := js.ObjectStore(ctx, r.Bucket)
	if err != nil {
		return nil, fmt.Errorf("segd export of %s: object store %s: %w", segment, r.Bucket, err)
	}
	res, err := obs.Get(ctx, r.Object)
	if err != nil {
		return nil, fmt.Errorf("segd export of %s: object %s: %w", segment, r.Object, err)
	}
	defer res.Close()
	var rd io.Reader = res
	if cfg.progress != nil {
		rd = &progressReader{r: res, total: r.Size, fn: cfg.progress}
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("segd export of %s: reading object %s: %w", segment, r.Object, err)
	}
	if r.Format == api.FormatRoaring {
		ex.Roaring = data
		return ex, nil
	}
	ex.Users = make([]string, 0, r.Count)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			ex.Users = append(ex.Users, line)
		}
	}
	if uint64(len(ex.Users)) != r.Count {
		return nil, fmt.Errorf("segd export of %s: object %s holds %d users, the reply said %d", segment, r.Object, len(ex.Users), r.Count)
	}
	return ex, sc.Err()
}

type progressReader struct {
	r     io.Reader
	done  uint64
	total uint64
	fn    func(done, total uint64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += uint64(n)
	p.fn(p.done, p.total)
	return n, err
}

// Query evaluates set algebra over segments, e.g. "vip & !churned | new_7d"
// (see api.SegmentQueryRequest). A syntax error is a 400 whose description
// gives the column; an unknown segment a 404.
func (c *Client) Query(ctx context.Context, expr string, countOnly bool, limit int) (*api.SegmentQueryReply, error) {
	var r api.SegmentQueryReply
	if err := c.call(ctx, api.SubjectSegmentQuery, api.SegmentQueryRequest{Expr: expr, CountOnly: countOnly, Limit: limit}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// History returns a segment's size, entries and exits per day between from
// and to (YYYY-MM-DD, inclusive; "" for the defaults: the last 30 days).
func (c *Client) History(ctx context.Context, segment, from, to string) ([]api.HistoryDay, error) {
	r, err := c.HistoryReply(ctx, segment, from, to)
	if r == nil {
		return nil, err
	}
	return r.Days, err
}

// HistoryReply is History with the whole reply, which says from which
// day the history is recorded (HistoryStart).
func (c *Client) HistoryReply(ctx context.Context, segment, from, to string) (*api.SegmentHistoryReply, error) {
	var r api.SegmentHistoryReply
	if err := c.call(ctx, api.SubjectSegmentHistory, api.SegmentHistoryRequest{Segment: segment, From: from, To: to}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Upload replaces (api.UploadReplace) or extends (api.UploadAppend) the
// members of a static segment and returns once segd has applied it, with
// the new size. A replace with no users empties the segment only with
// AllowEmpty; segd refuses it otherwise.
//
// A list too large for one message is sent in parts, in order, the later
// ones as appends; a replace in parts is then not atomic: between parts,
// readers see only the first parts, and the change feed shows the users of
// later parts leaving and entering again.
//
// segd stores each part in its events stream, then waits for it to be
// applied until shortly before ctx's deadline (or the client's timeout):
// when that is not enough, the reply has Applied false: the upload is
// stored, with its sequence, and segd applies it, in order, also after a
// restart. An error means a part was not stored; the error then says which
// parts were.
func (c *Client) Upload(ctx context.Context, segment string, users []string, mode string, opts ...UploadOption) (*api.SegmentUploadReply, error) {
	var cfg uploadConfig
	for _, o := range opts {
		o(&cfg)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	limit := int(c.nc.MaxPayload()) - 1024
	if limit <= 0 {
		limit = MaxBatchBytes - 1024
	}
	parts := splitUsers(users, limit-len(segment)-64)
	var last *api.SegmentUploadReply
	for i, part := range parts {
		m := mode
		if i > 0 {
			m = api.UploadAppend
		}
		if part == nil {
			part = []string{}
		}
		req := api.SegmentUploadRequest{Segment: segment, Users: part, Mode: m, AllowEmpty: cfg.allowEmpty, WaitMs: uploadWaitMs(ctx)}
		var r api.SegmentUploadReply
		if err := c.call(ctx, api.SubjectSegmentUpload, req, &r); err != nil {
			if i > 0 {
				return last, fmt.Errorf("part %d of %d: %w (parts 1 to %d are stored, through events stream sequence %d, and segd applies them)", i+1, len(parts), err, i, last.Seq)
			}
			if len(parts) > 1 {
				return nil, fmt.Errorf("part 1 of %d: %w", len(parts), err)
			}
			return nil, err
		}
		last = &r
	}
	return last, nil
}

// uploadWaitMs is how long segd may wait for an upload part to be applied:
// until a fifth of the time left (at least 100ms) before ctx's deadline, so
// that its reply arrives before the client gives up, and at most the
// server's 30s.
func uploadWaitMs(ctx context.Context) int {
	dl, _ := ctx.Deadline()
	left := time.Until(dl)
	wait := left - max(left/5, 100*time.Millisecond)
	return int(min(max(wait, time.Millisecond), 30*time.Second) / time.Millisecond)
}

// UploadOption configures Upload.
type UploadOption func(*uploadConfig)

type uploadConfig struct {
	allowEmpty bool
}

// AllowEmpty lets a replace with no users empty the segment; without it
// segd refuses such an upload.
func AllowEmpty() UploadOption { return func(c *uploadConfig) { c.allowEmpty = true } }

// splitUsers cuts users into lists whose JSON encoding stays under limit
// bytes (always at least one list, possibly empty).
func splitUsers(users []string, limit int) [][]string {
	var parts [][]string
	start, size := 0, 2
	for i, u := range users {
		n := jsonStringLen(u) + 1
		if size+n > limit && i > start {
			parts = append(parts, users[start:i])
			start, size = i, 2
		}
		size += n
	}
	return append(parts, users[start:])
}

// jsonStringLen is the length of s encoded as a JSON string by
// encoding/json: quotes, escapes (\n, \u00XX, HTML characters as \u003c),
// invalid UTF-8 as \ufffd. It saves marshaling a million ids to measure
// them.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// Preview evaluates a segment that is not saved over segd's retained event
// log and returns its size and up to limit members (0: the server's
// default, 100). definition is one segment as in a rules file. Replaying
// the log takes time: pass a ctx with a deadline to wait longer than the
// client's timeout.
func (c *Client) Preview(ctx context.Context, definition string, limit int) (*api.SegmentPreviewReply, error) {
	var r api.SegmentPreviewReply
	if err := c.call(ctx, api.SubjectSegmentPreview, api.SegmentPreviewRequest{Definition: definition, Limit: limit}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
