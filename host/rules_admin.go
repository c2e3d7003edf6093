package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// The rules admin API: segment definitions in JetStream KV (bus.RuleStore)
// above the --rules files. A definition in KV wins over a file's of the
// same id (the file's is logged as shadowed at start). A put or delete is
// compiled beside every other definition (references, cycles), stored,
// and queued for the applier, which hands it to the engine one at a time:
// engine.StartReplace rebuilds it from the retained log beside live
// ingest and swaps it in (rules_apply.go).

// kvFilePrefix names a KV definition in compile errors and Segment.File.
const kvFilePrefix = bus.RulesBucket + "/"

// ruleAdmin implements bus.RulesAdmin.
type ruleAdmin struct {
	s     *Server
	store *bus.RuleStore
	// mu serializes changes: compile, store and queue happen as one.
	mu sync.Mutex
	// defs are the KV definitions, as the applier is to run them.
	defs map[string]bus.RuleEntry
	// queue are the changes not handed to the engine yet, one per
	// segment; running is the segment being rebuilt, and cancel stops
	// that rebuild when a newer revision supersedes it.
	queue   []ruleChange
	running string
	cancel  context.CancelFunc
	// rebuilt is the last rebuild of each segment that swapped in.
	rebuilt map[string]api.RebuildSummary
	wake    chan struct{}
	done    chan struct{}
}

// ruleChange is a definition to run (seg) or a segment to remove (nil).
type ruleChange struct {
	id  string
	rev uint64
	seg *rules.Segment
	// parts are the partitions it has still to run in (nil: every one);
	// applied what those it ran in made of it.
	parts   []*Server
	applied []partApplied
}

// loadRules opens the rules bucket and compiles its definitions above the
// rule files; it returns the set and the KV revisions of its segments.
func (s *Server) loadRules(ctx context.Context) (*rules.RuleSet, map[string]uint64, error) {
	store, err := ensureRetry(ctx, s.cfg.Logger, bus.RulesBucket, func(ctx context.Context) (*bus.RuleStore, error) {
		return bus.OpenRuleStoreReplicas(ctx, s.js, s.cfg.Replicas)
	})
	if err != nil {
		return nil, nil, err
	}
	entries, err := store.All(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("rules bucket %s: %w", bus.RulesBucket, err)
	}
	a := &ruleAdmin{s: s, store: store, defs: map[string]bus.RuleEntry{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	revs := map[string]uint64{}
	for _, e := range entries {
		a.defs[e.Segment] = e
		revs[e.Segment] = e.Revision
	}
	s.rules = a
	set, shadowed, err := a.compileAtStart(revs)
	if err != nil {
		return nil, nil, fmt.Errorf("rules (files and %s): %w", bus.RulesBucket, err)
	}
	for _, sh := range shadowed {
		s.cfg.Logger.Warn("a rule file's segment is replaced by its definition in the rules API (KV wins)",
			"segment", sh.ID, "file", fmt.Sprintf("%s:%d", sh.File, sh.Line), "by", sh.By)
	}
	return set, revs, nil
}

// compileAtStart compiles the KV definitions over the files, leaving out
// (with an error in the log) the keys whose value does not compile or
// does not define the one segment the key names: written by hand (`nats
// kv put`), they must not stop segd from starting. Problems of rule files
// are an error, as before.
func (a *ruleAdmin) compileAtStart(revs map[string]uint64) (*rules.RuleSet, []rules.Shadowed, error) {
	for {
		// Each key in a layer of its own, so that a key that defines
		// another key's segment shadows it instead of failing both.
		var layers [][]rules.File
		for _, id := range sortedKeys(a.defs) {
			layers = append(layers, []rules.File{{Name: kvFilePrefix + id, Data: []byte(a.defs[id].Definition)}})
		}
		set, shadowed, err := rules.CompileLayers(append(layers, a.s.ruleFiles), a.s.ruleOpts)
		bad := map[string]string{}
		blame := func(file, why string) {
			if key, ok := strings.CutPrefix(file, kvFilePrefix); ok {
				if _, dup := bad[key]; !dup {
					bad[key] = why
				}
			}
		}
		var list rules.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				blame(e.File, e.Error())
			}
		} else if err != nil {
			return nil, nil, err
		}
		for _, sh := range shadowed {
			if key, ok := strings.CutPrefix(sh.By, kvFilePrefix); ok && key != sh.ID {
				blame(sh.By, fmt.Sprintf("key %q defines segment %q: a key holds the one segment it names", key, sh.ID))
			}
		}
		if set != nil {
			for _, sg := range set.Segments {
				if key, ok := strings.CutPrefix(sg.File, kvFilePrefix); ok && key != sg.ID {
					blame(sg.File, fmt.Sprintf("key %q defines segment %q: a key holds the one segment it names", key, sg.ID))
				}
			}
		}
		if len(bad) == 0 {
			if err != nil { // a rule file's problem
				return nil, nil, err
			}
			var fromFiles []rules.Shadowed
			for _, sh := range shadowed {
				if !strings.HasPrefix(sh.File, kvFilePrefix) {
					fromFiles = append(fromFiles, sh)
				}
			}
			return set, fromFiles, nil
		}
		for key, why := range bad {
			a.s.cfg.Logger.Error("a definition in the rules bucket is left out: it does not compile beside the others (fix it with rule.put or delete it)",
				"segment", key, "revision", a.defs[key].Revision, "error", oneLine(why))
			delete(a.defs, key)
			delete(revs, key)
		}
	}
}

// compile compiles the KV definitions (with top above them, if any) over
// the rule files. Under mu, or before the server runs. The caller must
// call release with the segments of the set it runs: every other plugin
// predicate the compile made (the set's other segments', and those of
// definitions another shadowed) is closed, releasing its warm pool and
// its pin on a plugin version.
func (a *ruleAdmin) compile(top []rules.File) (set *rules.RuleSet, shadowed []rules.Shadowed, release func(keep ...*rules.Segment), err error) {
	kv := make([]rules.File, 0, len(a.defs))
	for _, id := range sortedKeys(a.defs) {
		kv = append(kv, rules.File{Name: kvFilePrefix + id, Data: []byte(a.defs[id].Definition)})
	}
	layers := [][]rules.File{kv, a.s.ruleFiles}
	if top != nil {
		layers = append([][]rules.File{top}, layers...)
	}
	opts := a.s.ruleOpts
	tracked := &trackedPlugins{next: opts.Plugins}
	if opts.Plugins != nil {
		opts.Plugins = tracked
	}
	set, shadowed, err = rules.CompileLayers(layers, opts)
	return set, shadowed, tracked.releaseExcept, err
}

// compileBeside compiles one more file beside every definition (the
// rules API's and the files'), with opts; an id it defines that is taken
// is an error, as in rules.CompileSet. segment.preview uses it.
func (a *ruleAdmin) compileBeside(f rules.File, opts rules.Options) (*rules.RuleSet, error) {
	a.mu.Lock()
	kv := make([]rules.File, 0, len(a.defs)+1)
	for _, id := range sortedKeys(a.defs) {
		kv = append(kv, rules.File{Name: kvFilePrefix + id, Data: []byte(a.defs[id].Definition)})
	}
	a.mu.Unlock()
	set, shadowed, err := rules.CompileLayers([][]rules.File{append(kv, f), a.s.ruleFiles}, opts)
	for _, sh := range shadowed {
		if sh.By == f.Name {
			return nil, rules.ErrorList{{File: f.Name, Segment: sh.ID, Msg: fmt.Sprintf("id is already defined at %s:%d", sh.File, sh.Line)}}
		}
	}
	return set, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// located turns compile errors into the reply's list.
func located(err error) []api.RuleError {
	var list rules.ErrorList
	if !errors.As(err, &list) {
		return []api.RuleError{{Message: err.Error()}}
	}
	out := make([]api.RuleError, len(list))
	for i, e := range list {
		out[i] = api.RuleError{File: e.File, Line: e.Line, Column: e.Column, Segment: e.Segment, Field: e.Field, Message: e.Msg}
	}
	return out
}

// ValidateRules implements bus.RulesAdmin.
func (a *ruleAdmin) ValidateRules(_ context.Context, r api.RuleValidateRequest) (*api.RuleValidateReply, error) {
	top := []rules.File{{Name: "definition", Data: []byte(r.Definition)}}
	if len(r.Files) > 0 {
		top = make([]rules.File, len(r.Files))
		for i, f := range r.Files {
			top[i] = rules.File{Name: f.Name, Data: []byte(f.Data)}
		}
	}
	a.mu.Lock()
	set, _, release, err := a.compile(top)
	a.mu.Unlock()
	defer release()
	if err != nil {
		return &api.RuleValidateReply{Errors: located(err)}, nil
	}
	reply := &api.RuleValidateReply{Valid: true}
	for _, seg := range set.Segments {
		if slices.ContainsFunc(top, func(f rules.File) bool { return f.Name == seg.File }) {
			reply.Segments = append(reply.Segments, seg.ID)
		}
	}
	return reply, nil
}

// badDefinition is the 400 of a definition that does not compile. Its
// description is one line (it travels in a NATS header too): the problems
// are separated by "; ".
func badDefinition(err error) error {
	return &bus.Error{Code: api.CodeBadRequest, Field: "definition", Err: errors.New(oneLine(err.Error()))}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// PutRule implements bus.RulesAdmin.
func (a *ruleAdmin) PutRule(ctx context.Context, r api.RulePutRequest) (*api.RulePutReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	const name = "definition"
	set, _, release, err := a.compile([]rules.File{{Name: name, Data: []byte(r.Definition)}})
	// The set's other segments, and this one unless it is queued, are
	// not run: their plugin predicates are released.
	var queued *rules.Segment
	defer func() { release(queued) }()
	if err != nil {
		return nil, badDefinition(fmt.Errorf("the definition does not compile beside the running rules (the running revision stays): %w", err))
	}
	var seg *rules.Segment
	for _, s := range set.Segments {
		if s.File == name {
			if seg != nil {
				return nil, badDefinition(fmt.Errorf("the definition defines segments %q and %q: a put takes one", seg.ID, s.ID))
			}
			seg = s
		}
	}
	switch {
	case seg == nil:
		return nil, badDefinition(errors.New("the definition defines no segment (named predicates go in rule files)"))
	case r.Segment != "" && r.Segment != seg.ID:
		return nil, &bus.Error{Code: api.CodeBadRequest, Field: "segment", Err: fmt.Errorf("\"segment\" is %q but the definition's id is %q", r.Segment, seg.ID)}
	}
	if len(set.Predicates) > len(a.s.predicates) {
		return nil, badDefinition(errors.New("the definition defines named predicates: they go in rule files"))
	}
	at := a.s.defEngine().Now()
	rev, err := a.store.Put(ctx, seg.ID, r.Definition, r.Author, at, r.ExpectedRevision)
	if err != nil {
		return nil, err
	}
	a.defs[seg.ID] = bus.RuleEntry{Segment: seg.ID, Revision: rev, Definition: r.Definition, Author: r.Author, Time: at}
	// A new segment answers 503 "rebuilding" from now on, not 404.
	if err := a.s.eachEngine(ctx, func(e *engine.Engine) { e.AddPending(seg, rev) }); err != nil {
		return nil, err
	}
	a.enqueue(ruleChange{id: seg.ID, rev: rev, seg: seg})
	queued = seg
	a.s.cfg.Logger.Info("segment definition stored; rebuilding it from the event log", "segment", seg.ID, "revision", rev, "author", r.Author)
	return &api.RulePutReply{Segment: seg.ID, Revision: rev, State: "rebuilding"}, nil
}

// enqueue queues a change, replacing a queued one of the same segment and
// superseding its rebuild if it runs. Under mu.
func (a *ruleAdmin) enqueue(c ruleChange) {
	a.queue = slices.DeleteFunc(a.queue, func(q ruleChange) bool {
		if q.id != c.id {
			return false
		}
		if q.seg != nil && q.seg != c.seg {
			closePredicates(q.seg) // superseded before it ran
		}
		return true
	})
	a.queue = append(a.queue, c)
	if a.running == c.id && a.cancel != nil {
		a.cancel()
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// DeleteRule implements bus.RulesAdmin.
func (a *ruleAdmin) DeleteRule(ctx context.Context, r api.RuleRequest) (*api.RuleDeleteReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, ok := a.defs[r.Segment]
	if !ok {
		if _, _, err := a.s.defEngine().Segment(r.Segment); err == nil {
			return nil, &bus.Error{Code: api.CodeBadRequest, Field: "segment",
				Err: fmt.Errorf("segment %q is defined in a rule file, not through the API: remove it from the file", r.Segment)}
		}
		return nil, fmt.Errorf("segment %q has no definition in %s: %w", r.Segment, bus.RulesBucket, bus.ErrNotFound)
	}
	delete(a.defs, r.Segment)
	set, _, release, err := a.compile(nil)
	var queued *rules.Segment
	defer func() { release(queued) }()
	if err == nil {
		var readers []string
		for _, s := range set.Segments {
			if slices.Contains(s.References, r.Segment) {
				readers = append(readers, fmt.Sprintf("%q", s.ID))
			}
		}
		if len(readers) > 0 {
			err = fmt.Errorf("read by %s", strings.Join(readers, ", "))
		}
	}
	if err != nil {
		a.defs[r.Segment] = cur
		return nil, &bus.Error{Code: api.CodeConflict, Field: "segment",
			Err: fmt.Errorf("segment %q cannot be deleted while other segments read it: %s", r.Segment, readersOf(err, r.Segment))}
	}
	rev, err := a.store.Delete(ctx, r.Segment, r.ExpectedRevision)
	if err != nil {
		a.defs[r.Segment] = cur
		return nil, err
	}
	change := ruleChange{id: r.Segment, rev: rev}
	for _, s := range set.Segments { // a rule file's definition comes back
		if s.ID == r.Segment {
			change.seg, change.rev = s, 0
		}
	}
	a.enqueue(change)
	queued = change.seg
	a.s.cfg.Logger.Info("segment definition deleted", "segment", r.Segment, "revision", rev, "author", r.Author)
	return &api.RuleDeleteReply{Segment: r.Segment, Revision: rev}, nil
}

// readersOf says which segments read id: from the compile errors ("refers
// to segment ...") or the reason given.
func readersOf(err error, id string) string {
	var list rules.ErrorList
	if !errors.As(err, &list) {
		return oneLine(err.Error())
	}
	var readers []string
	for _, e := range list {
		if e.Segment != "" && strings.Contains(e.Msg, fmt.Sprintf("%q", id)) {
			readers = append(readers, fmt.Sprintf("%q", e.Segment))
		}
	}
	if len(readers) == 0 {
		return oneLine(err.Error())
	}
	return "read by " + strings.Join(slices.Compact(readers), ", ")
}

// GetRule implements bus.RulesAdmin.
func (a *ruleAdmin) GetRule(_ context.Context, segment string) (*api.Rule, error) {
	a.mu.Lock()
	def, inKV := a.defs[segment]
	last, rebuilt := a.rebuilt[segment]
	a.mu.Unlock()
	seg, info, err := a.s.segmentState(segment)
	if err != nil && !inKV {
		return nil, err
	}
	out := &api.Rule{Segment: segment, Source: "file", State: "rebuilding"}
	if err == nil {
		out.State, out.Serving = info.Status, info.Revision
		if info.NextRevision != nil {
			out.Rebuild = info.NextRevision.Rebuild
		} else if info.Rebuild != nil {
			out.Rebuild = info.Rebuild
		}
		out.File = seg.File
	}
	if rebuilt {
		out.LastRebuild = &last
	}
	if inKV {
		out.Source, out.File = "api", ""
		out.Definition, out.Revision, out.Author = def.Definition, def.Revision, def.Author
		out.Time = def.Time.UTC().Format(time.RFC3339)
	}
	return out, nil
}

// ListRules implements bus.RulesAdmin.
func (a *ruleAdmin) ListRules(ctx context.Context) (*api.RuleListReply, error) {
	ids := map[string]bool{}
	for _, info := range a.s.defEngine().Segments() {
		ids[info.ID] = true
	}
	a.mu.Lock()
	for id := range a.defs {
		ids[id] = true
	}
	a.mu.Unlock()
	out := &api.RuleListReply{Rules: []api.Rule{}}
	for _, id := range sortedKeys(ids) {
		r, err := a.GetRule(ctx, id)
		if err != nil {
			continue // removed meanwhile
		}
		r.Definition = "" // rule.get gives it
		out.Rules = append(out.Rules, *r)
	}
	return out, nil
}

// RuleHistory implements bus.RulesAdmin.
func (a *ruleAdmin) RuleHistory(ctx context.Context, r api.RuleRequest) (*api.RuleHistoryReply, error) {
	hist, err := a.store.History(ctx, r.Segment)
	if err != nil {
		return nil, err
	}
	if r.Limit > 0 && len(hist) > r.Limit {
		hist = hist[len(hist)-r.Limit:]
	}
	out := &api.RuleHistoryReply{Segment: r.Segment, Revisions: make([]api.RuleRevision, len(hist))}
	for i, h := range hist {
		out.Revisions[i] = api.RuleRevision{Revision: h.Revision, Definition: h.Definition, Author: h.Author,
			Time: h.Time.UTC().Format(time.RFC3339), Deleted: h.Deleted}
	}
	return out, nil
}

var _ bus.RulesAdmin = (*ruleAdmin)(nil)

// engineBusy is how long the applier waits before asking again for the
// engine's one rebuild slot, taken by a recovery rebuild.
const engineBusy = 100 * time.Millisecond

// startRuleAdmin starts the applier and the watch of the bucket; Close
// stops them with ctx.
func (s *Server) startRuleAdmin(ctx context.Context) {
	go s.rules.run(ctx)
	if err := s.rules.store.Watch(ctx, func(e bus.RuleEntry) { s.rules.written(ctx, e) }); err != nil {
		s.cfg.Logger.Error("definitions written to the rules bucket by others will apply at the next start", "error", err)
	}
}

// written applies a revision of the bucket that this segd did not write
// (another segd, or an operator's `nats kv put` / `nats kv del`): it is
// compiled beside the others and queued like a put, or a delete. One
// that does not compile is logged and left out; the running revision
// stays.
func (a *ruleAdmin) written(ctx context.Context, e bus.RuleEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, known := a.defs[e.Segment]
	if known && cur.Revision >= e.Revision || !known && e.Deleted {
		return // ours, or already applied
	}
	if e.Deleted {
		delete(a.defs, e.Segment)
	} else {
		a.defs[e.Segment] = e
	}
	set, _, release, err := a.compile(nil)
	var queued *rules.Segment
	defer func() { release(queued) }()
	if err == nil && !e.Deleted {
		// The key must be the id of the one segment its value defines.
		var ids []string
		for _, s := range set.Segments {
			if s.File == kvFilePrefix+e.Segment {
				ids = append(ids, s.ID)
			}
		}
		if len(ids) != 1 || ids[0] != e.Segment {
			err = fmt.Errorf("key %q defines segments %v: a key holds the one segment it names", e.Segment, ids)
		}
	}
	if err != nil {
		if known {
			a.defs[e.Segment] = cur
		} else {
			delete(a.defs, e.Segment)
		}
		a.s.cfg.Logger.Error("a revision written to the rules bucket by another writer does not compile; the running one stays",
			"segment", e.Segment, "revision", e.Revision, "deleted", e.Deleted, "error", oneLine(err.Error()))
		return
	}
	change := ruleChange{id: e.Segment, rev: e.Revision}
	for _, s := range set.Segments {
		if s.ID == e.Segment {
			change.seg = s
			if e.Deleted {
				change.rev = 0 // a rule file's definition comes back
			}
		}
	}
	if change.seg != nil && !e.Deleted {
		if err := a.s.eachEngine(ctx, func(en *engine.Engine) { en.AddPending(change.seg, e.Revision) }); err != nil {
			return
		}
	}
	a.enqueue(change)
	queued = change.seg
	a.s.cfg.Logger.Info("a revision written to the rules bucket by another writer is applied", "segment", e.Segment,
		"revision", e.Revision, "deleted", e.Deleted)
}

// stopRuleAdmin waits for the applier, once its context has ended.
func (s *Server) stopRuleAdmin() {
	if s.rules != nil && s.started {
		<-s.rules.done
	}
}
