package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/plugins"
	"github.com/segd/segd/rules"
)

// previewTimeout bounds a segment preview, which replays the retained log.
const previewTimeout = bus.PreviewTimeLimit

// previewFile names the definition in compile errors.
const previewFile = "definition"

// preview answers segment.preview: the definition is compiled beside the
// loaded rules (so that it may read saved segments, and an id that is taken
// is an error), and a private engine holding it and the segments it reads
// replays the retained event log up to what segd has applied. Nothing of
// segd's own state changes. One preview runs at a time: each replays the
// whole log.
func (s *Server) preview(ctx context.Context, r api.SegmentPreviewRequest) (*api.SegmentPreviewReply, error) {
	return s.previewWithin(ctx, r, previewTimeout)
}

// previewWithin runs a preview that stops after limit.
func (s *Server) previewWithin(ctx context.Context, r api.SegmentPreviewRequest, limit time.Duration) (*api.SegmentPreviewReply, error) {
	select {
	case s.previewSlot <- struct{}{}:
		defer func() { <-s.previewSlot }()
	default:
		return nil, &bus.Error{Code: api.CodeUnavailable, Err: errors.New("another segment preview is running; try again when it has finished")}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	p, err := s.compilePreview(r.Definition)
	if p != nil {
		// The plugin predicates compiled for the preview hold warm
		// instance pools for their parameters: release them.
		defer p.plugins.release()
	}
	if err != nil {
		return nil, &bus.Error{Code: api.CodeBadRequest, Field: "definition", Err: err}
	}
	to := s.appliedSeq()
	e := engine.New(engine.Config{Segments: p.segs, Location: s.cfg.Location, Clock: s.cfg.Clock,
		Logger: slog.New(slog.DiscardHandler), RetentionDays: s.ruleOpts.MaxWindowDays, MaxFutureSkew: s.cfg.MaxFutureSkew})
	progress, err := replayInto(ctx, e, s, to)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &bus.Error{Code: api.CodeUnavailable, Err: p.tooSlow(limit, time.Since(start), progress)}
		}
		return nil, err
	}
	_, info, err := e.Segment(p.seg.ID)
	if err != nil {
		return nil, err
	}
	ids, _, err := e.SegmentPage(p.seg.ID, 0, r.Limit)
	if err != nil {
		return nil, err
	}
	reply := &api.SegmentPreviewReply{ID: p.seg.ID, Kind: info.Kind, Size: info.Size, Users: e.UserNames(ids),
		Seq: to, Messages: progress.messages, TookMs: time.Since(start).Milliseconds()}
	// The private engine holds the definition and the segments it reads:
	// their evaluation errors and failed batches all bear on the answer.
	for _, si := range e.Segments() {
		reply.EvalErrors += si.EvalErrors
		if si.LastEvalError != "" && (reply.LastEvalError == "" || si.ID == p.seg.ID) {
			reply.LastEvalError = si.LastEvalError
		}
		if si.Error != "" && reply.Error == "" {
			reply.Error = fmt.Sprintf("segment %s is incomplete: a predicate failed a batch: %s", si.ID, si.Error)
		}
	}
	return reply, nil
}

// replayInto runs e over the events stream up to sequence to, and Ticks it
// so that windows are as of now, and says how far it got. The engine has
// stopped when it returns, so that its state may be read: a batch in
// progress stops at the deadline, because the preview's predicates check
// it between chunks (preview_watch.go).
func replayInto(ctx context.Context, e *engine.Engine, s *Server, to uint64) (replayProgress, error) {
	r := replayProgress{to: to}
	// The replay's plugin batches are the request's own: their failures
	// (old batches that once failed, parameters of the definition) must not
	// mark a plugin failed for segd's saved segments.
	runCtx, stop := context.WithCancel(plugins.Isolated(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(runCtx) }()
	defer func() { stop(); <-done }()
	src, err := bus.ReadLog(ctx, s.js, bus.EventsStream, 1, to)
	if err != nil {
		return r, err
	}
	defer src.Close()
	for {
		msg, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return r, err
		}
		r.at = msg.Seq
		if err := e.Apply(ctx, msg); err != nil {
			return r, err
		}
		r.messages, r.at = r.messages+1, 0
		r.events = e.Status().Events
	}
	// Windows as of now, even after the last event.
	return r, e.Tick(ctx)
}

// previewSet is a compiled preview: the segment, every segment the engine
// needs for it (itself and, transitively, the saved segments it reads),
// the watches on their predicates and the plugin predicates to release.
type previewSet struct {
	seg     *rules.Segment
	segs    []*rules.Segment
	watches []*watch
	plugins *trackedPlugins
}

// compilePreview compiles the definition as one more rule file beside the
// loaded ones. The definition must hold one segment (a single YAML
// document: one followed by an empty one is fine) and name only events
// segd has seen. The set is returned, with its plugins to release, also
// when compiling fails.
func (s *Server) compilePreview(definition string) (*previewSet, error) {
	p := &previewSet{plugins: &trackedPlugins{next: s.ruleOpts.Plugins}}
	data := []byte(definition)
	docs, err := rules.Documents(previewFile, data)
	if err != nil {
		return p, err
	}
	if len(docs) > 1 {
		return p, fmt.Errorf("a preview takes one segment definition; found %d documents: the second starts at line %d (after a ---); preview each on its own",
			len(docs), docs[1].Line)
	}
	// Compiling costs the square of the nesting: bound it before.
	if len(docs) == 1 && docs[0].Depth > bus.MaxPreviewDepth {
		return p, fmt.Errorf("the definition nests %d levels deep, over the limit of %d", docs[0].Depth, bus.MaxPreviewDepth)
	}
	opts := s.ruleOpts
	if opts.Plugins != nil {
		opts.Plugins = p.plugins
	}
	opts.CheckEvent = s.previewEventCheck()
	set, err := s.rules.compileBeside(rules.File{Name: previewFile, Data: data}, opts)
	if err != nil {
		return p, err
	}
	byID := map[string]*rules.Segment{}
	var mine []string
	for _, sg := range set.Segments {
		byID[sg.ID] = sg
		if sg.File == previewFile {
			p.seg = sg
			mine = append(mine, sg.ID)
		}
	}
	switch {
	case len(mine) == 0:
		return p, errors.New("the definition holds no segment")
	case len(mine) > 1:
		return p, fmt.Errorf("a preview takes one segment definition; the definition holds %d: %s", len(mine), strings.Join(mine, ", "))
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
	walk(p.seg.ID)
	for _, sg := range set.Segments {
		if need[sg.ID] {
			p.segs = append(p.segs, sg)
			p.watches = append(p.watches, watchPredicates(sg, p.plugins)...)
		}
	}
	return p, nil
}

// previewEventCheck refuses, in the definition, an event that segd has
// never indexed: the replay would find none of it, and the answer would be
// a silent "0 users" for what is most likely a typo. The names are those
// of the analysis index, which sees every applied event; when its
// dictionary is full, names may be missing from it and nothing is refused.
func (s *Server) previewEventCheck() func(file, event string) error {
	for _, p := range s.partitions() {
		if p.analysis == nil || p.analysis.Stats().Dropped > 0 {
			return nil
		}
	}
	var known []string // read once, on the first event named
	return func(file, event string) error {
		if file != previewFile {
			return nil // saved rules may wait for events to come
		}
		if known == nil {
			known = s.eventNames()
		}
		if _, found := slices.BinarySearch(known, event); found {
			return nil
		}
		if len(known) == 0 {
			return fmt.Errorf("unknown event %q: segd has applied no events yet, so a preview would match nobody", event)
		}
		return fmt.Errorf("unknown event %q: the retained event log holds none (events segd has seen: %s)", event, listSome(known, 20))
	}
}

// listSome joins up to n names, saying how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}
