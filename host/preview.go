package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// previewTimeout bounds a segment preview, which replays the retained log.
const previewTimeout = 2 * time.Minute

// previewFile names the definition in compile errors.
const previewFile = "definition"

// preview answers segment.preview: the definition is compiled beside the
// loaded rules (so that it may read saved segments, and an id that is taken
// is an error), and a private engine holding it and the segments it reads
// replays the retained event log up to what segd has applied. Nothing of
// segd's own state changes. One preview runs at a time: each replays the
// whole log.
func (s *Server) preview(ctx context.Context, r api.SegmentPreviewRequest) (*api.SegmentPreviewReply, error) {
	select {
	case s.previewSlot <- struct{}{}:
		defer func() { <-s.previewSlot }()
	default:
		return nil, &bus.Error{Code: api.CodeUnavailable, Err: errors.New("another segment preview is running; try again when it has finished")}
	}
	start := time.Now()
	seg, segs, err := s.compilePreview(r.Definition)
	if err != nil {
		return nil, &bus.Error{Code: api.CodeBadRequest, Field: "definition", Err: err}
	}
	to := s.engine.Status().LastSeq
	e := engine.New(engine.Config{Segments: segs, Location: s.cfg.Location, Clock: s.cfg.Clock,
		Logger: slog.New(slog.DiscardHandler), RetentionDays: s.ruleOpts.MaxWindowDays, MaxFutureSkew: s.cfg.MaxFutureSkew})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(runCtx) }()
	defer func() { stop(); <-done }()

	src, err := bus.ReadLog(ctx, s.js, bus.EventsStream, 1, to)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var n uint64
	for {
		msg, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, previewError(err)
		}
		if err := e.Apply(ctx, msg); err != nil {
			return nil, previewError(err)
		}
		n++
	}
	if err := e.Tick(ctx); err != nil { // windows as of now, even after the last event
		return nil, previewError(err)
	}
	_, info, err := e.Segment(seg.ID)
	if err != nil {
		return nil, err
	}
	ids, _, err := e.SegmentPage(seg.ID, 0, r.Limit)
	if err != nil {
		return nil, err
	}
	return &api.SegmentPreviewReply{ID: seg.ID, Kind: info.Kind, Size: info.Size, Users: e.UserNames(ids),
		Seq: to, Messages: n, TookMs: time.Since(start).Milliseconds()}, nil
}

// previewError reports a preview that ran out of time as a 503.
func previewError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &bus.Error{Code: api.CodeUnavailable, Err: fmt.Errorf("the preview did not finish within %v: the event log is too long to replay on demand", previewTimeout)}
	}
	return err
}

// compilePreview compiles the definition as one more segment of the loaded
// rule files and returns it with every segment the engine needs for it:
// itself and, transitively, the saved segments it reads.
func (s *Server) compilePreview(definition string) (*rules.Segment, []*rules.Segment, error) {
	// The definition becomes the only item of a rules file; errors are
	// mapped back to its own lines and columns.
	var b strings.Builder
	b.WriteString("segments:\n")
	for i, line := range strings.Split(strings.TrimRight(definition, "\n"), "\n") {
		if i == 0 {
			b.WriteString("  - ")
		} else {
			b.WriteString("    ")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	files := append(append([]rules.File(nil), s.ruleFiles...), rules.File{Name: previewFile, Data: []byte(b.String())})
	set, err := rules.CompileSet(files, s.ruleOpts)
	if err != nil {
		var list rules.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				if e.File == previewFile && e.Line > 1 {
					e.Line--
					e.Column = max(e.Column-4, 1)
				}
			}
			return nil, nil, list
		}
		return nil, nil, err
	}
	byID := map[string]*rules.Segment{}
	var seg *rules.Segment
	for _, sg := range set.Segments {
		byID[sg.ID] = sg
		if sg.File == previewFile {
			seg = sg
		}
	}
	if seg == nil {
		return nil, nil, errors.New("the definition holds no segment")
	}
	need := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		if need[id] {
			return
		}
		need[id] = true
		for _, ref := range byID[id].References {
			walk(ref)
		}
	}
	walk(seg.ID)
	var segs []*rules.Segment
	for _, sg := range set.Segments {
		if need[sg.ID] {
			segs = append(segs, sg)
		}
	}
	return seg, segs, nil
}
