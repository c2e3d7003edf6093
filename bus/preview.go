package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/segd/segd/bus/api"
)

// Preview limits (docs/api.md, segment.preview).
const (
	// DefaultPreviewLimit and MaxPreviewLimit bound the members a preview
	// returns.
	DefaultPreviewLimit = 100
	MaxPreviewLimit     = 10000
	// MaxPreviewDefinitionBytes bounds a definition: one segment is a few
	// hundred bytes, and the rule compiler's work grows with the text.
	MaxPreviewDefinitionBytes = 64 << 10
	// MaxPreviewDepth bounds how deeply a definition's YAML (or JSON)
	// nests: compiling costs the square of the depth, and a segment's
	// conditions rarely nest more than a few levels (each all/any/not is
	// two).
	MaxPreviewDepth = 100
	// PreviewTimeLimit bounds a preview, which replays the retained event
	// log: past it the preview stops (also inside a batch) and answers a
	// 503 saying how far it got and which predicate took the time.
	PreviewTimeLimit = 2 * time.Minute
)

// PreviewFunc computes a segment preview (see api.SegmentPreviewRequest).
// It runs on a service worker; ctx bounds it.
type PreviewFunc func(ctx context.Context, r api.SegmentPreviewRequest) (*api.SegmentPreviewReply, error)

// PreviewEndpoint returns segment.preview, for ServiceOptions.Endpoints:
// an ad-hoc segment evaluated over the event log without being saved,
// within timeout.
func PreviewEndpoint(preview PreviewFunc, timeout time.Duration) Endpoint {
	return Endpoint{
		Name: "segment_preview", Subject: api.SubjectSegmentPreview, Slow: true,
		Description: "What a segment that is not saved would hold now: its definition (one segment as in a rules file) is compiled and evaluated over the retained event log, with the size and the first members.",
		Request:     `{"definition":"id: big_payers\ndid: {event: pay, aggregate: sum(amount), is: \">= 100\", last: 30d}\n","limit":2}`,
		Reply:       `{"id":"big_payers","kind":"behavioral","size":212,"users":["u00007","u00019"],"seq":3301,"messages":3301,"took_ms":912}`,
		Parse: func(data []byte) (func() (any, error), *api.ErrorDetail) {
			var r api.SegmentPreviewRequest
			if bad := decodeRequest(data, &r, false); bad != nil {
				return nil, bad
			}
			if len(r.Definition) > MaxPreviewDefinitionBytes {
				return nil, badField("definition", fmt.Sprintf(`"definition" is %d bytes, over the limit of %d: a preview takes one segment`, len(r.Definition), MaxPreviewDefinitionBytes))
			}
			if strings.TrimSpace(r.Definition) == "" {
				return nil, badField("definition", `"definition" is required: one segment as in a rules file, e.g. "id: buyers\ndid: {event: pay, last: 7d}"`)
			}
			var bad *api.ErrorDetail
			if r.Limit, bad = requestLimit(r.Limit, DefaultPreviewLimit, MaxPreviewLimit); bad != nil {
				return nil, bad
			}
			return func() (any, error) {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				return preview(ctx, r)
			}, nil
		},
	}
}
