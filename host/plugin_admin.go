package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/plugins"
	"github.com/segd/segd/rules"
)

// The plugins admin API: WASM modules in the JetStream Object Store
// (bus.PluginStore) beside the --plugins directory. At start the
// directory's plugins load first, then the store's: a module in the store
// wins over the directory's file of the same name (a warning names the
// file). A put loads the module into the registry, which validates,
// compiles and warms it and swaps it in atomically (a bad module is
// refused and the running version stays); the module is then stored, and
// every segment naming the plugin is queued on the rules applier
// (rules_admin.go), which rebuilds it from the retained log beside live
// ingest and swaps it in: meanwhile it serves its previous membership,
// marked rebuilding, which the previous version keeps judging
// (plugins.Registry.LoadKeeping) until the last of those segments has
// swapped; then the registry releases it (keptVersions).

// pluginAdmin implements bus.PluginsAdmin.
type pluginAdmin struct {
	s     *Server
	store *bus.PluginStore
	// mu serializes puts and deletes: load, store and queue happen as one.
	mu sync.Mutex
	// stored are the store's modules (by name) as loaded; fromDir the
	// --plugins files (by name).
	stored  map[string]bus.PluginEntry
	fromDir map[string]string
	// kept are the plugins whose previous version still runs, each with
	// the segments still to swap to the new one (keptVersions).
	keptMu sync.Mutex
	kept   map[string]map[string]bool
}

// loadPluginStore opens the plugins bucket and loads its modules above
// the --plugins directory's, creating the registry if the directory gave
// none (so that plugins can be put without a restart). A stored module
// that does not load is logged and left out: it must not stop segd from
// starting.
func (s *Server) loadPluginStore(ctx context.Context) error {
	store, err := ensureRetry(ctx, s.cfg.Logger, bus.PluginsBucket, func(ctx context.Context) (*bus.PluginStore, error) {
		return bus.OpenPluginStoreReplicas(ctx, s.js, s.cfg.Replicas)
	})
	if err != nil {
		return err
	}
	if s.plugins == nil {
		reg, err := plugins.New(plugins.Options{CacheDir: filepath.Join(s.cfg.DataDir, "wasm-cache"), Logger: s.cfg.Logger,
			WazeroInterrupts: s.cfg.PluginWazeroInterrupts})
		if err != nil {
			return err
		}
		s.plugins = reg
		s.ruleOpts.Plugins = reg
	}
	a := &pluginAdmin{s: s, store: store, stored: map[string]bus.PluginEntry{}, fromDir: map[string]string{}, kept: map[string]map[string]bool{}}
	for _, st := range s.plugins.Statuses() {
		if st.File != "" {
			a.fromDir[st.Name] = st.File
		}
	}
	s.pluginAdmin = a
	entries, err := store.All(ctx)
	if err != nil {
		return fmt.Errorf("plugins bucket %s: %w", bus.PluginsBucket, err)
	}
	for _, e := range entries {
		if err := a.loadStored(ctx, e.Name, false); err != nil {
			s.cfg.Logger.Error("a module in the plugins bucket is left out: it does not load (put a good one with plugin.put, or delete it)",
				"plugin", e.Name, "version", e.Digest, "error", oneLine(err.Error()))
		}
	}
	return nil
}

// loadStored loads plugin name's stored module into the registry; keep
// keeps the previous version for the segments still serving with it.
func (a *pluginAdmin) loadStored(ctx context.Context, name string, keep bool) error {
	e, wasm, err := a.store.Get(ctx, name)
	if err != nil {
		return err
	}
	m, err := plugins.ParseManifest([]byte(e.Manifest), bus.PluginsBucket+"/"+name+".yaml")
	if err != nil {
		return err
	}
	if file, ok := a.fromDir[name]; ok {
		a.s.cfg.Logger.Warn("a plugin in --plugins is replaced by its module in the plugins bucket (the bucket wins)",
			"plugin", name, "file", file, "version", e.Digest)
	}
	load := a.s.plugins.Load
	if keep {
		load = a.s.plugins.LoadKeeping
	}
	if err := load(ctx, name, wasm, m); err != nil {
		return err
	}
	a.stored[name] = e
	return nil
}

// badModule is the 400 of a module or manifest the registry refuses.
func badModule(field string, err error) error {
	return &bus.Error{Code: api.CodeBadRequest, Field: field, Err: errors.New(oneLine(err.Error()))}
}

// PutPlugin implements bus.PluginsAdmin.
func (a *pluginAdmin) PutPlugin(ctx context.Context, r api.PluginPutRequest) (*api.PluginPutReply, error) {
	wasm := r.Module
	if r.Object != "" {
		var err error
		if wasm, err = a.store.ReadUpload(ctx, r.Object, r.Digest, plugins.DefaultMaxModuleBytes); err != nil {
			return nil, err
		}
	}
	m, err := plugins.ParseManifest([]byte(r.Manifest), r.Name+".yaml")
	if err != nil {
		return nil, badModule("manifest", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev, known := a.s.plugins.Status(r.Name)
	if cur, ok := a.stored[r.Name]; ok && cur.Digest == bus.Digest(wasm) && cur.Manifest == r.Manifest && prev.Version == cur.Digest {
		// The version that runs, again: nothing to rebuild.
		return &api.PluginPutReply{Name: r.Name, Version: cur.Digest, Previous: cur.Digest, Size: len(wasm), Rebuilding: []string{}}, nil
	}
	if err := a.s.plugins.LoadKeeping(ctx, r.Name, wasm, m); err != nil {
		if !known {
			// Refused modules of new names leave no entry behind: the
			// registry would otherwise list every name ever tried.
			a.s.plugins.Unload(r.Name)
		}
		stays := "no version of it runs"
		if prev.Version != "" {
			stays = fmt.Sprintf("the running version %.12s stays", prev.Version)
		}
		return nil, badModule("module", fmt.Errorf("the module is refused (%s): %w", stays, err))
	}
	e, err := a.store.Put(ctx, r.Name, wasm, r.Manifest, r.Author, a.s.defEngine().Now())
	if err != nil {
		// Running, not stored: plugin.get shows the two versions. The
		// segments judge with it from now on.
		a.s.plugins.ReleasePrevious(r.Name)
		return nil, fmt.Errorf("plugin %s: version %.12s runs but is not stored, so a restart will not load it: %w", r.Name, bus.Digest(wasm), err)
	}
	a.stored[r.Name] = e
	rebuilding := a.s.rules.rebuildNaming(r.Name)
	a.s.cfg.Logger.Info("plugin version stored; rebuilding the segments that name it from the event log", "plugin", r.Name,
		"version", e.Digest, "previous", prev.Version, "segments", rebuilding, "author", r.Author)
	return &api.PluginPutReply{Name: r.Name, Version: e.Digest, Previous: prev.Version, Size: len(wasm), Rebuilding: rebuilding}, nil
}

// rebuildNaming queues every segment whose definition names plugin on the
// applier, at its current revision: each is rebuilt from the log with the
// plugin's current version and swapped in, superseding a rebuild of it
// that started on the previous version. It returns their ids, sorted.
// The previous version keeps judging the served membership of those
// segments until the last has swapped (keptVersions), and is released at
// once if there are none.
func (a *ruleAdmin) rebuildNaming(plugin string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []string{}
	set, _, release, err := a.compile(nil)
	var queued []*rules.Segment
	defer func() { release(queued...) }()
	if err != nil {
		// The running definitions compiled before; they name a plugin
		// that no longer judges their params. Recovery handles them.
		a.s.cfg.Logger.Error("the segments naming a new plugin version do not compile; they are not rebuilt", "plugin", plugin, "error", oneLine(err.Error()))
		a.s.pluginAdmin.keepFor(plugin, nil)
		return out
	}
	defer func() { a.s.pluginAdmin.keepFor(plugin, out) }()
	for _, seg := range set.Segments {
		if !slices.Contains(engine.SegmentPlugins(seg), plugin) {
			continue
		}
		queued = append(queued, seg)
		rev := uint64(0)
		if d, ok := a.defs[seg.ID]; ok {
			rev = d.Revision
		}
		a.enqueue(ruleChange{id: seg.ID, rev: rev, seg: seg})
		out = append(out, seg.ID)
	}
	return out
}

// closePredicates releases the plugin predicates of a compiled segment
// that will not run (their parameter sets' pools).
func closePredicates(seg *rules.Segment) {
	for pred := range rules.Predicates(seg.Condition) {
		if c, ok := pred.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// segmentsNaming lists, sorted, the segments that name plugin: those the
// engine runs or holds as pending, and the changes queued for them.
func (s *Server) segmentsNaming(plugin string) []string {
	s.rules.mu.Lock()
	defer s.rules.mu.Unlock()
	return s.segmentsNamingLocked(plugin)
}

// segmentsNamingLocked is segmentsNaming under the rules admin's lock. A
// queued change stands for its segment as the engine will run it: a
// queued delete leaves the segment out, a queued definition is the one
// looked at; a segment deleted through the API that the engine still
// runs (the applier is removing it) is left out too.
func (s *Server) segmentsNamingLocked(plugin string) []string {
	queued := map[string]*rules.Segment{}
	for _, c := range s.rules.queue {
		queued[c.id] = c.seg
	}
	var out []string
	e := s.defEngine()
	for _, info := range e.Segments() {
		seg, _, err := e.Segment(info.ID)
		if q, ok := queued[info.ID]; ok {
			seg, err = q, nil
		} else if _, defined := s.rules.defs[info.ID]; err == nil && !defined && strings.HasPrefix(seg.File, kvFilePrefix) {
			continue // deleted through the API; the engine is removing it
		}
		if err == nil && seg != nil && slices.Contains(engine.SegmentPlugins(seg), plugin) {
			out = append(out, info.ID)
		}
	}
	for id, seg := range queued {
		if seg != nil && slices.Contains(engine.SegmentPlugins(seg), plugin) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// GetPlugin implements bus.PluginsAdmin.
func (a *pluginAdmin) GetPlugin(ctx context.Context, r api.PluginRequest) (*api.Plugin, error) {
	out, err := a.describe(r.Name)
	if err != nil {
		return nil, err
	}
	vs, err := a.store.Versions(ctx, r.Name)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: its versions in %s: %w", r.Name, bus.PluginsBucket, err)
	}
	for _, v := range vs {
		if r.Version != "" && !strings.HasPrefix(v.Digest, r.Version) {
			continue
		}
		out.Versions = append(out.Versions, api.PluginVersion{Version: v.Digest, Size: v.Size, Author: v.Author,
			Time: v.Time.UTC().Format(time.RFC3339), Manifest: v.Manifest, Object: v.Name})
	}
	if r.Version != "" {
		switch len(out.Versions) {
		case 0:
			return nil, fmt.Errorf("plugin %q has no kept version %s (the last %d are kept): %w", r.Name, r.Version, api.PluginVersionsKept, bus.ErrNotFound)
		case 1:
		default:
			return nil, &bus.Error{Code: api.CodeBadRequest, Field: "version",
				Err: fmt.Errorf("%d kept versions of plugin %q start with %s: give more digits", len(out.Versions), r.Name, r.Version)}
		}
	}
	return out, nil
}

// describe is plugin.get without the kept versions.
func (a *pluginAdmin) describe(name string) (*api.Plugin, error) {
	a.mu.Lock()
	e, inStore := a.stored[name]
	file, inDir := a.fromDir[name]
	a.mu.Unlock()
	st, loaded := a.s.plugins.Status(name)
	if !inStore && !inDir && (!loaded || st.Version == "") {
		return nil, fmt.Errorf("plugin %q is not loaded: %w", name, bus.ErrNotFound)
	}
	out := &api.Plugin{Name: name, Source: "dir", File: file, Version: st.Version, ABI: st.ABI, State: string(st.State),
		LastError: st.LastError, Segments: a.s.segmentsNaming(name)}
	if out.Segments == nil {
		out.Segments = []string{}
	}
	if inStore {
		out.Source, out.File = "store", ""
		out.Stored, out.Size, out.Manifest, out.Author = e.Digest, e.Size, e.Manifest, e.Author
		out.Time = e.Time.UTC().Format(time.RFC3339)
	}
	return out, nil
}

// ListPlugins implements bus.PluginsAdmin.
func (a *pluginAdmin) ListPlugins(ctx context.Context) (*api.PluginListReply, error) {
	names := map[string]bool{}
	for _, st := range a.s.plugins.Statuses() {
		names[st.Name] = true
	}
	a.mu.Lock()
	for n := range a.stored {
		names[n] = true
	}
	a.mu.Unlock()
	out := &api.PluginListReply{Plugins: []api.Plugin{}}
	for _, n := range sortedKeys(names) {
		p, err := a.describe(n)
		if err != nil {
			continue // unloaded meanwhile, or never loaded
		}
		p.Manifest = "" // plugin.get gives it
		out.Plugins = append(out.Plugins, *p)
	}
	return out, nil
}

// DeletePlugin implements bus.PluginsAdmin.
func (a *pluginAdmin) DeletePlugin(ctx context.Context, r api.PluginRequest) (*api.PluginDeleteReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.stored[r.Name]; !ok {
		if file, ok := a.fromDir[r.Name]; ok {
			return nil, &bus.Error{Code: api.CodeBadRequest, Field: "name",
				Err: fmt.Errorf("plugin %q is loaded from %s, not through the API: remove the file", r.Name, file)}
		}
		return nil, fmt.Errorf("plugin %q has no module in %s: %w", r.Name, bus.PluginsBucket, bus.ErrNotFound)
	}
	// The rules applier must not compile a new segment naming it while
	// the delete runs: its lock is held across the check and the unload.
	a.s.rules.mu.Lock()
	defer a.s.rules.mu.Unlock()
	if users := a.s.segmentsNamingLocked(r.Name); len(users) > 0 {
		return nil, &bus.Error{Code: api.CodeConflict, Field: "name",
			Err: fmt.Errorf("plugin %q cannot be deleted while segments name it: %s", r.Name, strings.Join(quoted(users), ", "))}
	}
	if err := a.store.Delete(ctx, r.Name); err != nil {
		return nil, err
	}
	delete(a.stored, r.Name)
	if file, ok := a.fromDir[r.Name]; ok {
		// The directory's module comes back, as at a start without the
		// bucket's.
		if err := a.s.plugins.LoadFile(ctx, file); err != nil {
			a.s.cfg.Logger.Error("the --plugins module of a deleted plugin does not load", "plugin", r.Name, "file", file, "error", err)
		}
	} else {
		a.s.plugins.Unload(r.Name)
	}
	a.s.cfg.Logger.Info("plugin deleted from the plugins bucket", "plugin", r.Name, "author", r.Author, "file_kept", a.fromDir[r.Name])
	return &api.PluginDeleteReply{Name: r.Name}, nil
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

var _ bus.PluginsAdmin = (*pluginAdmin)(nil)

// startPluginWatch applies the versions others write to the plugins bucket
// (another segd, `nats object put`): a new version is loaded and its
// segments rebuilt as after a put; one that does not load is logged and
// the running version stays. Close stops it with ctx.
func (s *Server) startPluginWatch(ctx context.Context) {
	a := s.pluginAdmin
	if err := a.store.WatchPlugins(ctx, func(e bus.PluginEntry, deleted bool) { a.written(ctx, e, deleted) }); err != nil {
		s.cfg.Logger.Error("modules written to the plugins bucket by others will load at the next start", "error", err)
	}
}

func (a *pluginAdmin) written(ctx context.Context, e bus.PluginEntry, deleted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, known := a.stored[e.Name]
	switch {
	case deleted && !known, !deleted && known && cur.NUID == e.NUID:
		return // ours, or already loaded
	case deleted:
		delete(a.stored, e.Name)
		if users := a.s.segmentsNaming(e.Name); len(users) > 0 {
			a.s.cfg.Logger.Warn("a plugin was deleted from the plugins bucket by another writer while segments name it; its version runs until the next start",
				"plugin", e.Name, "segments", users)
			return
		}
		if file, ok := a.fromDir[e.Name]; ok {
			_ = a.s.plugins.LoadFile(ctx, file)
		} else {
			a.s.plugins.Unload(e.Name)
		}
		a.s.cfg.Logger.Info("a plugin deleted from the plugins bucket by another writer is unloaded", "plugin", e.Name)
		return
	}
	if err := a.loadStored(ctx, e.Name, true); err != nil {
		a.s.cfg.Logger.Error("a module written to the plugins bucket by another writer does not load; the running version stays",
			"plugin", e.Name, "error", oneLine(err.Error()))
		return
	}
	rebuilding := a.s.rules.rebuildNaming(e.Name)
	a.s.cfg.Logger.Info("a module written to the plugins bucket by another writer is loaded", "plugin", e.Name,
		"version", a.stored[e.Name].Digest, "segments", rebuilding)
}

// keepFor records that plugin's previous version runs until segments have
// swapped to the new one (added to those still waiting from an earlier
// version); with none, it is released now. Under the rules admin's lock,
// so that the applier cannot settle a segment between its enqueue and
// this.
func (a *pluginAdmin) keepFor(plugin string, segments []string) {
	a.keptMu.Lock()
	defer a.keptMu.Unlock()
	w := a.kept[plugin]
	if w == nil {
		w = map[string]bool{}
	}
	for _, id := range segments {
		w[id] = true
	}
	if len(w) == 0 {
		delete(a.kept, plugin)
		a.s.plugins.ReleasePrevious(plugin)
		return
	}
	a.kept[plugin] = w
}

// settled notes that segment id has no change queued or running any more
// (rules_admin.go's applier): a plugin whose previous version ran only for
// segments that have all settled has it released. Under the rules admin's
// lock.
func (a *pluginAdmin) settled(id string) {
	a.keptMu.Lock()
	defer a.keptMu.Unlock()
	for plugin, w := range a.kept {
		if !w[id] {
			continue
		}
		delete(w, id)
		if len(w) == 0 {
			delete(a.kept, plugin)
			a.s.plugins.ReleasePrevious(plugin)
		}
	}
}

// releaseExcept closes the predicates made, but those the segments in
// keep run.
func (t *trackedPlugins) releaseExcept(keep ...*rules.Segment) {
	kept := map[any]bool{}
	for _, seg := range keep {
		if seg != nil {
			for pred := range rules.Predicates(seg.Condition) {
				if t.isPlugin(pred) { // comparable: a map key
					kept[pred] = true
				}
			}
		}
	}
	for pr := range t.made {
		if c, ok := pr.(io.Closer); ok && !kept[pr] {
			_ = c.Close()
		}
	}
	t.made = nil
}
