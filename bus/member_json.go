package bus

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segd/segd/bus/api"
)

// The two membership requests are the hot path of the service: their
// small fixed-shape requests are scanned by hand and their replies
// appended by hand, which is several times cheaper than encoding/json's
// reflection. Anything out of the ordinary (escapes, other value types,
// repeated or unknown keys, malformed JSON) falls back to decodeRequest,
// so errors stay exactly those of encoding/json, and the replies are
// byte-identical to json.Marshal of the api types (TestMemberJSONMatches).

// plainRequest is a member.check or member.segments request read by
// scanPlainRequest.
type plainRequest struct {
	user, segment      string
	hasUser, hasSeg    bool
	segments           []string
	hasSegs, exactOnly bool
	hasExact           bool
}

// replyBuf is a reply already encoded into a buffer of replyBufs: respond
// publishes it as is and returns the buffer once the connection has
// copied it, so a 100-segment reply costs no fresh 10 KB each time.
type replyBuf struct{ b []byte }

// maxPooledReply bounds the buffers kept for reuse: a rare huge reply is
// left to the collector rather than pinned.
const maxPooledReply = 64 << 10

var replyBufs = sync.Pool{New: func() any { return &replyBuf{b: make([]byte, 0, 1024)} }}

func getReplyBuf() *replyBuf { return replyBufs.Get().(*replyBuf) }

// release returns r to the pool. r must not be used after.
func (r *replyBuf) release() {
	if cap(r.b) <= maxPooledReply {
		r.b = r.b[:0]
		replyBufs.Put(r)
	}
}

// scanPlainRequest reads a JSON object whose keys are among keys (exactly
// spelled, each at most once) and whose values are plain strings (no
// escapes, no control characters), an array of them ("segments") or a
// boolean ("exact_only"). ok is false for anything else: the caller then
// decodes with encoding/json, which also says what is wrong.
func scanPlainRequest(data []byte, segmentsRequest bool) (r plainRequest, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return r, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return r, skipSpace(data, i+1) == len(data)
	}
	for {
		key, j, ok := plainString(data, i)
		if !ok {
			return r, false
		}
		i = skipSpace(data, j)
		if i >= len(data) || data[i] != ':' {
			return r, false
		}
		i = skipSpace(data, i+1)
		switch {
		case key == "user" && !r.hasUser:
			r.user, i, ok = plainString(data, i)
			r.hasUser = true
		case key == "segment" && !segmentsRequest && !r.hasSeg:
			r.segment, i, ok = plainString(data, i)
			r.hasSeg = true
		case key == "segments" && segmentsRequest && !r.hasSegs:
			r.segments, i, ok = plainStrings(data, i)
			r.hasSegs = true
		case key == "exact_only" && segmentsRequest && !r.hasExact:
			r.exactOnly, i, ok = plainBool(data, i)
			r.hasExact = true
		default:
			return r, false
		}
		if !ok {
			return r, false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return r, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return r, skipSpace(data, i+1) == len(data)
		default:
			return r, false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at data[i] with no escapes and no
// control characters (the request is valid UTF-8: checkRequest).
func plainString(data []byte, i int) (string, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return string(data[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20:
			return "", j, false
		}
	}
	return "", i, false
}

// plainStrings reads a non-empty JSON array of plain strings.
func plainStrings(data []byte, i int) ([]string, int, bool) {
	if i >= len(data) || data[i] != '[' {
		return nil, i, false
	}
	var out []string
	i = skipSpace(data, i+1)
	for {
		s, j, ok := plainString(data, i)
		if !ok {
			return nil, j, false
		}
		out = append(out, s)
		i = skipSpace(data, j)
		if i >= len(data) {
			return nil, i, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return out, i + 1, true
		default:
			return nil, i, false
		}
	}
}

func plainBool(data []byte, i int) (bool, int, bool) {
	switch {
	case len(data)-i >= 4 && string(data[i:i+4]) == "true":
		return true, i + 4, true
	case len(data)-i >= 5 && string(data[i:i+5]) == "false":
		return false, i + 5, true
	}
	return false, i, false
}

// appendJSONString appends s as json.Marshal would: plain ASCII as is,
// anything needing an escape (or HTML-safe escaping, or a check of its
// UTF-8) through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			// A copy: s itself then never escapes, nor the reply
			// structs that hold it, which would cost an allocation on
			// every call.
			q, _ := json.Marshal(strings.Clone(s))
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainJSON marks the bytes json.Marshal writes as they are in a string.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendAsOf(b []byte, a *api.AsOf) []byte {
	if a == nil {
		return b
	}
	b = append(b, `"as_of":{"seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	b = append(b, `,"time":`...)
	b = appendJSONString(b, a.Time)
	return append(b, '}')
}

// appendMemberCheck appends r as json.Marshal would. A since not zero,
// when r.Since is empty, is written as r.Since set to its RFC 3339 form
// would be, without making that string.
func appendMemberCheck(b []byte, r *api.MemberCheckReply, since time.Time) []byte {
	b = append(b, `{"member":`...)
	b = strconv.AppendBool(b, r.Member)
	switch {
	case r.Since != "":
		b = append(b, `,"since":`...)
		b = appendJSONString(b, r.Since)
	case !since.IsZero():
		b = append(b, `,"since":"`...)
		b = since.AppendFormat(b, time.RFC3339) // RFC 3339 needs no escapes
		b = append(b, '"')
	}
	if r.State != "" {
		b = append(b, `,"state":`...)
		b = appendJSONString(b, r.State)
	}
	if r.Revision != 0 {
		b = append(b, `,"revision":`...)
		b = strconv.AppendUint(b, r.Revision, 10)
	}
	if r.AsOf != nil {
		b = append(b, ',')
		b = appendAsOf(b, r.AsOf)
	}
	return append(b, '}')
}

// appendMemberSegments appends the member.segments reply of v, exactly
// as json.Marshal of the api.MemberSegmentsReply built from it would
// (memberSegmentsReply in the tests), without building it: a user in many
// of many segments would otherwise cost a slice of each kind and a string
// per membership.
func appendMemberSegments(b []byte, v *api.MemberView, exactOnly bool) []byte {
	answered := func(sv *api.SegmentView) bool {
		return sv.Served && !(exactOnly && sv.State != api.StateExact)
	}
	b = append(b, `{"segments":[`...)
	n := 0
	for i := range v.Segments {
		if sv := &v.Segments[i]; answered(sv) && sv.Member {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, sv.Segment)
			n++
		}
	}
	b = append(b, `],"memberships":[`...)
	n = 0
	for i := range v.Segments {
		if sv := &v.Segments[i]; answered(sv) && sv.Member {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"segment":`...)
			b = appendJSONString(b, sv.Segment)
			b = append(b, `,"since":"`...)
			b = sv.Since.AppendFormat(b, time.RFC3339) // RFC 3339 needs no escapes
			b = append(b, `"}`...)
			n++
		}
	}
	b = append(b, ']')
	n = 0
	for i := range v.Segments {
		if sv := &v.Segments[i]; !answered(sv) {
			if n == 0 {
				b = append(b, `,"unavailable":[`...)
			} else {
				b = append(b, ',')
			}
			b = appendJSONString(b, sv.Segment)
			n++
		}
	}
	if n > 0 {
		b = append(b, ']')
	}
	if len(v.Segments) > 0 {
		b = append(b, `,"states":[`...)
		for i := range v.Segments {
			sv := &v.Segments[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"segment":`...)
			b = appendJSONString(b, sv.Segment)
			b = append(b, `,"state":`...)
			b = appendJSONString(b, sv.State)
			if sv.Revision != 0 {
				b = append(b, `,"revision":`...)
				b = strconv.AppendUint(b, sv.Revision, 10)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(v.Unknown) > 0 {
		b = append(b, `,"unknown":`...)
		b = appendJSONStrings(b, v.Unknown)
	}
	b = append(b, ',')
	b = appendAsOf(b, &v.AsOf)
	return append(b, '}')
}
