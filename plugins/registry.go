package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segd/segd/plugins/internal/preempt"
	"github.com/segd/segd/plugins/internal/wasmbin"
	"github.com/segd/segd/rules"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Options configure a Registry. The zero value works: no on-disk cache,
// slog.Default, built-in limits, the real clock.
type Options struct {
	// CacheDir is the on-disk compilation cache, e.g. <data>/wasm-cache. A
	// module version is compiled once and later loads take the cached
	// machine code. Empty keeps compiled code in memory only.
	CacheDir string
	// Logger receives load messages, faults and the plugins' own log lines
	// (with attribute plugin=NAME). Default slog.Default().
	Logger *slog.Logger
	// MaxModuleBytes caps the size of a .wasm file (default 10 MiB).
	MaxModuleBytes int64
	// Defaults fills the fields a plugin's manifest leaves zero.
	Defaults Manifest
	// Clock is the host clock handed to plugins as each batch's "now" and
	// used for status times and the failed-plugin probe interval. Default
	// time.Now.
	Clock func() time.Time
	// ProbeFailedEvery is how often a plugin marked failed gets one batch to
	// show it recovered (default 30s); other batches fail fast with ErrFailed.
	ProbeFailedEvery time.Duration
	// WazeroInterrupts enforces deadlines with wazero's context-done checks
	// instead of rewriting modules (plugins/internal/preempt): 2.5-5x slower
	// for a Go guest. It exists to measure the difference and as an escape
	// hatch should a module misbehave after the rewrite.
	WazeroInterrupts bool
	// MaxPools caps the parameter sets a plugin version keeps a warm
	// instance pool for (default DefaultMaxPools): past it, the least
	// recently used pool is closed, and started again if it is used again.
	// Rules hold a pool per distinct params; requests that compile rules
	// (segment.preview) release theirs, and the cap bounds the memory of
	// any that are not released.
	MaxPools int
}

// DefaultMaxPools is Options.MaxPools' default.
const DefaultMaxPools = 64

// Registry holds loaded plugins and implements rules.Plugins. It is safe
// for concurrent use.
type Registry struct {
	opts  Options
	log   *slog.Logger
	cache wazero.CompilationCache

	mu       sync.Mutex
	runtimes map[rtKey]*rtEntry
	compiled map[compKey]*compiledEntry
	plugins  map[string]*plugin
	closed   bool

	// onUsable is the OnUsable callback (usable.go).
	onUsable atomic.Pointer[func(name string, newVersion bool)]
}

var _ rules.Plugins = (*Registry)(nil)

// rtKey identifies a wazero runtime: memory limit and interrupt policy are
// runtime-wide settings in wazero, so plugins that differ share none.
type rtKey struct {
	pages     uint32
	interrupt bool
}

type rtEntry struct {
	r wazero.Runtime
}

type compKey struct {
	sum string
	rt  rtKey
	// preempt: the module compiled is the one instrumented by
	// plugins/internal/preempt.
	preempt bool
}

// preemptImport is the host function plugins/internal/preempt makes a
// module call every preemptBudget loop iterations and function entries.
var preemptImport = preempt.Import{Module: hostModule, Name: "preempt"}

type compiledEntry struct {
	cm   wazero.CompiledModule
	refs int
	once sync.Once
	err  error
	done chan struct{}
}

// version is one loaded module version of a plugin, with its pools.
type version struct {
	plugin   *plugin
	sum      string
	file     string
	man      Manifest
	deadline time.Duration
	rt       *rtEntry
	key      compKey
	compiled wazero.CompiledModule
	glog     *guestLogger
	abi      uint32
	kinds    uint32
	// preempt: the deadline is enforced through the instrumented module's
	// interrupt global rather than wazero's context checks.
	preempt bool

	mu    sync.Mutex
	pools map[string]*pool
	// uses stamps pools as they are used, to close the least recently used
	// one past Options.MaxPools.
	uses atomic.Int64

	inflight  atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
}

// plugin is a named plugin across its versions.
type plugin struct {
	reg  *Registry
	name string
	log  *slog.Logger
	cur  atomic.Pointer[version]

	mu sync.Mutex
	// held are previous versions LoadKeeping kept running for the
	// predicates compiled with them, until ReleasePrevious (keep.go).
	held        []*version
	state       State
	lastErr     string
	lastErrAt   time.Time
	consecutive int
	failedAt    time.Time
	probing     bool
	params      map[string]*paramSet // every parameter set in use

	stats struct {
		batches, items, timeouts, traps, guestErrors, retries  atomic.Uint64
		instantiated, recycled, slow, failFast, canceledByHost atomic.Uint64
		logDropped                                             atomic.Uint64
	}
}

// paramSet is a parameter set that predicates use, with how many do: a new
// version warms it before the swap, and when the last predicate is closed
// its pool goes.
type paramSet struct {
	params []byte
	refs   int
}

// State is a plugin's health.
type State string

// Plugin states.
const (
	// StateOK: the plugin judges batches.
	StateOK State = "ok"
	// StateFailed: the last FailAfter batches failed; batches fail fast with
	// ErrFailed, except one probe per Options.ProbeFailedEvery.
	StateFailed State = "failed"
	// StateInvalid: the module could not be loaded; LastError says why.
	StateInvalid State = "invalid"
)

// Status describes a plugin for listings (segment.list) and health checks.
type Status struct {
	Name string `json:"name"`
	// File is the module file (empty for modules loaded from bytes).
	File string `json:"file,omitempty"`
	// Version is the hex sha256 of the module bytes.
	Version string `json:"version,omitempty"`
	// ABI is the plugin's ABI version, "major.minor".
	ABI         string    `json:"abi,omitempty"`
	Events      bool      `json:"events"`
	Profiles    bool      `json:"profiles"`
	State       State     `json:"state"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Manifest    Manifest  `json:"manifest"`
	// Interrupt says how the deadline is enforced: InterruptChecks,
	// InterruptWazero or InterruptOff.
	Interrupt string `json:"interrupt,omitempty"`
	// Counters since load (across versions).
	Batches         uint64 `json:"batches"`
	Items           uint64 `json:"items"`
	Timeouts        uint64 `json:"timeouts"`
	Traps           uint64 `json:"traps"`
	GuestErrors     uint64 `json:"guest_errors"`
	Retries         uint64 `json:"retries"`
	FailedFast      uint64 `json:"failed_fast"`
	SlowBatches     uint64 `json:"slow_batches"`
	Instantiated    uint64 `json:"instantiated"`
	Recycled        uint64 `json:"recycled"`
	LogLinesDropped uint64 `json:"log_lines_dropped"`
	// Instances is the number of live instances now.
	Instances int `json:"instances"`
	// Pools is the number of parameter sets with a pool of instances now
	// (at most Options.MaxPools).
	Pools int `json:"pools"`
}

// How a plugin's deadline is enforced (Status.Interrupt).
const (
	// InterruptChecks: checks inserted into the module at every loop header
	// and function entry count down a budget and ask the host for more,
	// which stops the guest past its deadline (about 1%).
	InterruptChecks = "checks"
	// InterruptWazero: wazero's context-done checks, for modules the
	// rewrite refuses (a start section, an unsupported instruction); 3-5x
	// slower for a Go guest.
	InterruptWazero = "wazero"
	// InterruptOff: manifest interrupt: false; a late batch is only
	// reported.
	InterruptOff = "off"
)

// New returns an empty registry; add plugins with Load.
func New(opts Options) (*Registry, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxModuleBytes == 0 {
		opts.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.ProbeFailedEvery == 0 {
		opts.ProbeFailedEvery = 30 * time.Second
	}
	if opts.MaxPools <= 0 {
		opts.MaxPools = DefaultMaxPools
	}
	r := &Registry{
		opts:     opts,
		log:      opts.Logger,
		runtimes: map[rtKey]*rtEntry{},
		compiled: map[compKey]*compiledEntry{},
		plugins:  map[string]*plugin{},
	}
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("plugins: compilation cache %s: %w", opts.CacheDir, err)
		}
		r.cache = c
	} else {
		r.cache = wazero.NewCompilationCache()
	}
	return r, nil
}

// LoadDir loads every NAME.wasm in dir, with its optional manifest NAME.yaml,
// NAME.yml or NAME.json. It loads all the plugins it can: the error, if any,
// joins one error per plugin that failed (each naming its file), and those
// plugins are listed with StateInvalid. The registry is nil only when the
// directory cannot be read or the cache cannot be opened.
func LoadDir(ctx context.Context, dir string, opts Options) (*Registry, error) {
	r, err := New(opts)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	sort.Strings(files)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = r.LoadFile(ctx, f)
		}()
	}
	wg.Wait()
	return r, errors.Join(errs...)
}

// LoadFile loads (or replaces) the plugin in file NAME.wasm with its manifest.
func (r *Registry) LoadFile(ctx context.Context, file string) error {
	name := strings.TrimSuffix(filepath.Base(file), ".wasm")
	fail := func(err error) error {
		r.setInvalid(name, file, err)
		return err
	}
	st, err := os.Stat(file)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w", name, err))
	}
	if st.Size() > r.opts.MaxModuleBytes {
		return fail(fmt.Errorf("plugin %s: %s: %w: %d bytes exceeds the %d-byte module limit", name, file, ErrInvalid, st.Size(), r.opts.MaxModuleBytes))
	}
	wasm, err := os.ReadFile(file)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w", name, err))
	}
	m, mfile, err := readManifest(strings.TrimSuffix(file, ".wasm"))
	if err != nil {
		return fail(fmt.Errorf("plugin %s: manifest: %w", name, err))
	}
	if mfile == "" {
		mfile = file
	}
	return r.load(ctx, name, file, mfile, wasm, m, false)
}

// Load validates, compiles and warms a module and makes it the current
// version of plugin name, atomically: batches already running finish on the
// old version, which is closed when the last one returns; new batches use the
// new one. Every parameter set in use is initialised on the new version
// first, so a version that rejects them is refused and the old one stays.
func (r *Registry) Load(ctx context.Context, name string, wasm []byte, m Manifest) error {
	return r.load(ctx, name, "", name+".wasm", wasm, m, false)
}

// load loads a version; keep holds the previous one for the predicates
// compiled with it (LoadKeeping) instead of retiring it.
func (r *Registry) load(ctx context.Context, name, file, mfile string, wasm []byte, m Manifest, keep bool) error {
	where := file
	if where == "" {
		where = name + ".wasm"
	}
	v, err := r.prepare(ctx, name, where, mfile, wasm, m)
	if err != nil {
		err = fmt.Errorf("plugin %s: %w", name, err)
		r.setInvalid(name, file, err)
		return err
	}
	v.file = file
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		v.close()
		return ErrClosed
	}
	p := r.plugins[name]
	if p == nil {
		p = r.newPlugin(name)
		r.plugins[name] = p
	}
	r.mu.Unlock()
	v.plugin = p
	v.glog.dropped = &p.stats.logDropped

	// Warm every parameter set in use before the swap.
	p.mu.Lock()
	params := make([][]byte, 0, len(p.params))
	for _, ps := range p.params {
		params = append(params, ps.params)
	}
	p.mu.Unlock()
	for _, ps := range params {
		if _, err := v.pool(ctx, ps); err != nil {
			v.close()
			err = fmt.Errorf("plugin %s: new version %.12s rejects parameters %s in use: %w", name, v.sum, ps, err)
			p.recordError(err)
			return err
		}
	}
	p.mu.Lock()
	old := p.cur.Swap(v)
	p.state, p.consecutive, p.probing = StateOK, 0, false
	kept := keep && old != nil
	if kept {
		p.held = append(p.held, old)
	}
	p.mu.Unlock()
	if old != nil {
		if !kept {
			old.retire()
		}
		p.log.Info("plugin version swapped", "old", old.sum[:12], "new", v.sum[:12], "previous_kept", kept)
		r.usable(name, true)
	} else {
		p.log.Info("plugin loaded", "file", where, "version", v.sum[:12],
			"abi", fmt.Sprintf("%d.%d", v.abi>>16, v.abi&0xffff), "interrupt", v.interruptMode())
	}
	return nil
}

func (r *Registry) newPlugin(name string) *plugin {
	p := &plugin{reg: r, name: name, state: StateOK, params: map[string]*paramSet{}}
	p.log = r.log.With("plugin", name)
	return p
}

// setInvalid records a load failure for listing, unless a good version of
// the plugin is already loaded (a failed reload keeps the old version).
func (r *Registry) setInvalid(name, file string, err error) {
	r.log.Error("plugin not loaded", "plugin", name, "file", file, "err", err)
	r.mu.Lock()
	p := r.plugins[name]
	if p == nil {
		p = r.newPlugin(name)
		r.plugins[name] = p
	}
	r.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastErr, p.lastErrAt = err.Error(), r.opts.Clock()
	if p.cur.Load() == nil {
		p.state = StateInvalid
	}
}

// prepare validates and compiles a module and probes its ABI exports.
func (r *Registry) prepare(ctx context.Context, name, where, mfile string, wasm []byte, m Manifest) (*version, error) {
	if int64(len(wasm)) > r.opts.MaxModuleBytes {
		return nil, fmt.Errorf("%s: %w: %d bytes exceeds the %d-byte module limit", where, ErrInvalid, len(wasm), r.opts.MaxModuleBytes)
	}
	if err := checkHeader(wasm); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	// Before anything decodes the module for real: a declared count that
	// the bytes cannot hold would make the decoder allocate for it.
	if err := wasmbin.CheckLimits(wasm); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", where, ErrInvalid, err)
	}
	imps, err := scanImports(wasm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	for _, imp := range imps {
		if err := checkImport(imp); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	man, err := m.resolve(r.opts.Defaults, mfile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(wasm)
	v := &version{
		sum:      hex.EncodeToString(sum[:]),
		man:      man,
		deadline: time.Duration(man.DeadlineMS) * time.Millisecond,
		pools:    map[string]*pool{},
	}
	// Interrupts come from checks inserted into the module, which cost a
	// few percent; wazero's own (a call into Go at every loop header, 3-5x
	// for a Go guest) serve only modules the rewrite cannot handle.
	code := wasm
	if *man.Interrupt && !r.opts.WazeroInterrupts {
		if inst, err := preempt.Instrument(wasm, preemptImport); err == nil {
			code, v.preempt = inst, true
		} else {
			r.log.Warn("plugin uses wazero's slower interrupts: its module cannot be instrumented", "plugin", name, "where", where, "err", err)
		}
	}
	v.key = compKey{v.sum, rtKey{uint32(man.MemoryMiB) * 16, *man.Interrupt && !v.preempt}, v.preempt}
	rt, err := r.runtime(ctx, v.key.rt)
	if err != nil {
		return nil, err
	}
	v.rt = rt
	cm, err := r.compile(ctx, v.key, code)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	v.compiled = cm
	if err := checkExports(cm); err != nil {
		r.releaseCompiled(v.key)
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	// Probe the ABI on a throwaway instance.
	v.plugin = r.newPlugin(name)
	v.glog = newGuestLogger(v.plugin.log, man.LogPerSecond, &v.plugin.stats.logDropped)
	in, err := v.newInstance(ctx)
	if err != nil {
		r.releaseCompiled(v.key)
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer in.close()
	for _, f := range []struct {
		name string
		dst  *uint32
	}{{"segd_abi_version", &v.abi}, {"segd_kinds", &v.kinds}} {
		if err := in.invoke(ctx, f.name, in.mod.ExportedFunction(f.name), v.deadline); err != nil {
			r.releaseCompiled(v.key)
			return nil, fmt.Errorf("%s: %s: %w", where, f.name, err)
		}
		*f.dst = uint32(in.stack[0])
	}
	if v.abi>>16 != abiMajor {
		r.releaseCompiled(v.key)
		return nil, fmt.Errorf("%s: %w: ABI version %d.%d, this host speaks %d.x (segd_abi_version returned %#x)",
			where, ErrInvalid, v.abi>>16, v.abi&0xffff, abiMajor, v.abi)
	}
	if v.kinds&(kindEvents|kindProfiles) == 0 {
		r.releaseCompiled(v.key)
		return nil, fmt.Errorf("%s: %w: segd_kinds returned %d: the plugin judges neither events (1) nor profiles (2)", where, ErrInvalid, v.kinds)
	}
	return v, nil
}

// interruptMode reports how v's deadline is enforced.
func (v *version) interruptMode() string {
	switch {
	case v.preempt:
		return InterruptChecks
	case v.key.rt.interrupt:
		return InterruptWazero
	}
	return InterruptOff
}

// runtime returns the shared runtime for a memory limit and interrupt policy.
func (r *Registry) runtime(ctx context.Context, k rtKey) (*rtEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if e := r.runtimes[k]; e != nil {
		return e, nil
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(r.cache).
		WithMemoryLimitPages(k.pages).
		WithCloseOnContextDone(k.interrupt)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	_, err := rt.NewHostModuleBuilder(hostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export("log").
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(hostPreempt), nil, []api.ValueType{api.ValueTypeI32}).
		Export(preemptImport.Name).
		Instantiate(ctx)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	e := &rtEntry{r: rt}
	r.runtimes[k] = e
	return e, nil
}

// hostLog implements the segd.log import.
func hostLog(ctx context.Context, m api.Module, stack []uint64) {
	in, _ := ctx.Value(ctxKey{}).(*instance)
	if in == nil {
		return
	}
	level, p, l := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	b, ok := m.Memory().Read(p, min(l, maxLogLine+1))
	if !ok {
		return
	}
	in.v.glog.logLine(slog.Level(level), string(b))
}

// compile compiles a module once per (sha256, runtime); concurrent loads of
// the same bytes wait for one compilation.
func (r *Registry) compile(ctx context.Context, k compKey, wasm []byte) (wazero.CompiledModule, error) {
	r.mu.Lock()
	e := r.compiled[k]
	if e == nil {
		e = &compiledEntry{done: make(chan struct{})}
		r.compiled[k] = e
	}
	e.refs++
	rt := r.runtimes[k.rt]
	r.mu.Unlock()
	e.once.Do(func() {
		defer close(e.done)
		// Compile functions in parallel: a Go guest has thousands.
		cctx := experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
		e.cm, e.err = rt.r.CompileModule(cctx, wasm)
	})
	<-e.done
	if e.err != nil {
		r.releaseCompiled(k)
		return nil, fmt.Errorf("%w: %v", ErrInvalid, e.err)
	}
	return e.cm, nil
}

func (r *Registry) releaseCompiled(k compKey) {
	r.mu.Lock()
	e := r.compiled[k]
	if e == nil {
		r.mu.Unlock()
		return
	}
	e.refs--
	if e.refs > 0 {
		r.mu.Unlock()
		return
	}
	delete(r.compiled, k)
	r.mu.Unlock()
	if e.cm != nil {
		_ = e.cm.Close(context.Background())
	}
}

// pool returns the version's pool for a parameter set, creating and
// prewarming it on first use. Past Options.MaxPools pools, the least
// recently used is closed.
func (v *version) pool(ctx context.Context, params []byte) (*pool, error) {
	key := string(params)
	v.mu.Lock()
	pl := v.pools[key]
	v.mu.Unlock()
	if pl != nil {
		pl.used.Store(v.uses.Add(1))
		return pl, nil
	}
	pl = newPool(v, params)
	if err := pl.prewarm(ctx); err != nil {
		pl.close()
		return nil, err
	}
	pl.used.Store(v.uses.Add(1))
	v.mu.Lock()
	if other := v.pools[key]; other != nil {
		v.mu.Unlock()
		pl.close()
		return other, nil
	}
	v.pools[key] = pl
	var evicted []*pool
	for len(v.pools) > v.plugin.reg.opts.MaxPools {
		var oldKey string
		var old *pool
		for k, q := range v.pools {
			if q != pl && (old == nil || q.used.Load() < old.used.Load()) {
				oldKey, old = k, q
			}
		}
		delete(v.pools, oldKey)
		evicted = append(evicted, old)
	}
	v.mu.Unlock()
	for _, q := range evicted {
		// A batch running on it finishes; its instances close when put back.
		q.close()
	}
	return pl, nil
}

// dropPool closes the pool of a parameter set no predicate uses any more.
func (v *version) dropPool(key string) {
	v.mu.Lock()
	pl := v.pools[key]
	delete(v.pools, key)
	v.mu.Unlock()
	if pl != nil {
		pl.close()
	}
}

// pools counts the version's pools.
func (v *version) poolCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pools)
}

// acquire pins the current version for one batch.
func (p *plugin) acquire() *version {
	for {
		v := p.cur.Load()
		if v == nil {
			return nil
		}
		v.inflight.Add(1)
		if !v.retired.Load() {
			return v
		}
		v.release()
	}
}

func (v *version) release() {
	if v.inflight.Add(-1) == 0 && v.retired.Load() {
		v.closeOnce.Do(v.close)
	}
}

// retire marks the version replaced; it closes when its last batch ends.
func (v *version) retire() {
	v.retired.Store(true)
	if v.inflight.Load() == 0 {
		v.closeOnce.Do(v.close)
	}
}

func (v *version) close() {
	v.mu.Lock()
	pools := v.pools
	v.pools = map[string]*pool{}
	v.mu.Unlock()
	for _, pl := range pools {
		pl.close()
	}
	v.plugin.reg.releaseCompiled(v.key)
}

func (v *version) live() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, pl := range v.pools {
		n += int(pl.live.Load())
	}
	return n
}

// EventPredicate implements rules.Plugins: a predicate over events backed by
// plugin ref.Name with ref.Params. It starts the first instance and runs
// the plugin's init with the parameters, so unknown plugins, plugins that do
// not judge events and rejected parameters are reported here.
func (r *Registry) EventPredicate(ref rules.PluginRef) (rules.EventPredicate, error) {
	pr, err := r.predicate(ref, kindEvents)
	if err != nil {
		return nil, err
	}
	return (*eventPredicate)(pr), nil
}

// ProfilePredicate implements rules.Plugins: a predicate over user
// profiles, with the same checks as EventPredicate.
func (r *Registry) ProfilePredicate(ref rules.PluginRef) (rules.ProfilePredicate, error) {
	pr, err := r.predicate(ref, kindProfiles)
	if err != nil {
		return nil, err
	}
	return (*profilePredicate)(pr), nil
}

type predicate struct {
	p *plugin
	// v is the version current when the predicate was made: it judges
	// the predicate's batches while it runs (a version LoadKeeping keeps),
	// after which they go to the current version.
	v      *version
	params []byte
	closed sync.Once
}

// close releases the predicate's hold on its parameter set: the last one
// released closes the set's pool of instances.
func (pr *predicate) close() {
	pr.closed.Do(func() { pr.p.releaseParams(pr.params) })
}

type eventPredicate predicate

// MatchEvents implements rules.EventPredicate.
func (e *eventPredicate) MatchEvents(ctx context.Context, events []rules.Event, out rules.Bits) error {
	return e.p.match(ctx, e.v, kindEvents, e.params, items{ev: events}, out)
}

// Close releases the predicate (io.Closer): when no predicate uses its
// parameters any more, their warm instances are closed and a new version
// no longer initialises them. A closed predicate still works, starting a
// pool again if it must. Rules compiled for one request (segment.preview)
// close theirs when it ends.
func (e *eventPredicate) Close() error {
	(*predicate)(e).close()
	return nil
}

type profilePredicate predicate

// MatchProfiles implements rules.ProfilePredicate.
func (e *profilePredicate) MatchProfiles(ctx context.Context, profiles []rules.Profile, out rules.Bits) error {
	return e.p.match(ctx, e.v, kindProfiles, e.params, items{ps: profiles}, out)
}

// Close releases the predicate, as eventPredicate.Close.
func (e *profilePredicate) Close() error {
	(*predicate)(e).close()
	return nil
}

func kindWord(kind uint32) string {
	if kind == kindEvents {
		return "events"
	}
	return "profiles"
}

func (r *Registry) predicate(ref rules.PluginRef, kind uint32) (*predicate, error) {
	r.mu.Lock()
	p := r.plugins[ref.Name]
	closed := r.closed
	var names []string
	for n, q := range r.plugins {
		if q.cur.Load() != nil {
			names = append(names, n)
		}
	}
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if p == nil {
		sort.Strings(names)
		return nil, fmt.Errorf("unknown plugin %q (loaded: %s)", ref.Name, strings.Join(names, ", "))
	}
	params, err := json.Marshal(ref.Params) // sorted keys: a canonical form
	if err != nil {
		return nil, fmt.Errorf("plugin %s: params: %w", ref.Name, err)
	}
	if ref.Params == nil {
		params = []byte("{}")
	}
	v := p.acquire()
	if v == nil {
		p.mu.Lock()
		msg := p.lastErr
		p.mu.Unlock()
		return nil, fmt.Errorf("plugin %s is not loaded: %s", ref.Name, msg)
	}
	defer v.release()
	if v.kinds&kind == 0 {
		return nil, fmt.Errorf("plugin %s does not judge %s (segd_kinds = %d)", ref.Name, kindWord(kind), v.kinds)
	}
	if _, err := v.pool(context.Background(), params); err != nil {
		return nil, fmt.Errorf("plugin %s: params %s: %w", ref.Name, params, err)
	}
	p.mu.Lock()
	ps := p.params[string(params)]
	if ps == nil {
		ps = &paramSet{params: params}
		p.params[string(params)] = ps
	}
	ps.refs++
	p.mu.Unlock()
	return &predicate{p: p, v: v, params: params}, nil
}

// releaseParams drops one predicate's hold on a parameter set; the last
// one closes its pool in the current version.
func (p *plugin) releaseParams(params []byte) {
	key := string(params)
	p.mu.Lock()
	ps := p.params[key]
	last := ps != nil && ps.refs <= 1
	if last {
		delete(p.params, key)
	} else if ps != nil {
		ps.refs--
	}
	p.mu.Unlock()
	if !last {
		return
	}
	for _, v := range p.versions() {
		if v.pin() {
			v.dropPool(key)
			v.release()
		}
	}
}

// gate lets a batch through unless the plugin is failed; a failed plugin
// lets one probe batch through per ProbeFailedEvery.
func (p *plugin) gate() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != StateFailed {
		return nil
	}
	if !p.probing && p.reg.opts.Clock().Sub(p.failedAt) >= p.reg.opts.ProbeFailedEvery {
		p.probing = true
		p.failedAt = p.reg.opts.Clock()
		return nil
	}
	p.stats.failFast.Add(1)
	return fmt.Errorf("plugin %s: %w since %s: %s", p.name, ErrFailed, p.failedAt.Format(time.RFC3339), p.lastErr)
}

func (p *plugin) recordError(err error) {
	p.mu.Lock()
	p.lastErr, p.lastErrAt = err.Error(), p.reg.opts.Clock()
	p.mu.Unlock()
}

// outcome updates the health after a batch; it reports a success after a
// failed batch.
func (p *plugin) outcome(err error, failAfter int) (recovered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		if p.state == StateFailed {
			p.log.Info("plugin recovered")
		}
		recovered = p.consecutive > 0
		p.state, p.consecutive, p.probing = StateOK, 0, false
		return recovered
	}
	p.lastErr, p.lastErrAt = err.Error(), p.reg.opts.Clock()
	p.consecutive++
	p.probing = false
	if p.state != StateFailed && p.consecutive >= failAfter {
		p.state, p.failedAt = StateFailed, p.reg.opts.Clock()
		p.log.Error("plugin marked failed", "consecutive_failures", p.consecutive, "err", err)
	}
	return false
}

// match runs one batch through the current version, in chunks of at most
// MaxBatch items and MaxBatchMiB bytes, retrying a faulted chunk once on a
// fresh instance.
func (p *plugin) match(ctx context.Context, pinned *version, kind uint32, params []byte, src items, out rules.Bits) error {
	n := src.len()
	if n == 0 {
		return nil
	}
	if len(out) < (n+63)/64 {
		return fmt.Errorf("plugin %s: answer has room for %d items, batch has %d", p.name, 64*len(out), n)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if isolated(ctx) {
		return p.matchIsolated(ctx, pinned, kind, params, src, out)
	}
	if err := p.gate(); err != nil {
		return err
	}
	v := p.acquireFor(pinned)
	if v == nil {
		return fmt.Errorf("plugin %s is not loaded", p.name)
	}
	defer v.release()
	err := v.match(ctx, kind, params, src, out)
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() != nil {
		p.stats.canceledByHost.Add(1)
		return err // the caller gave up: not the plugin's fault
	}
	if p.outcome(err, v.man.FailAfter) {
		p.reg.usable(p.name, false)
	}
	if err != nil {
		return fmt.Errorf("plugin %s: %w", p.name, err)
	}
	p.stats.batches.Add(1)
	p.stats.items.Add(uint64(n))
	return nil
}

func (v *version) match(ctx context.Context, kind uint32, params []byte, src items, out rules.Bits) error {
	pl, err := v.pool(ctx, params)
	if err != nil {
		return err
	}
	now := v.plugin.reg.opts.Clock().UnixMilli()
	maxBytes := v.man.MaxBatchMiB << 20
	n := src.len()
	for start := 0; start < n; {
		// A caller's deadline (a preview's) stops a batch between chunks
		// too, not only inside the guest.
		if err := ctx.Err(); err != nil {
			return err
		}
		size := min(v.man.MaxBatch, n-start)
		done, err := pl.runChunk(ctx, kind, now, start, size, src, out, maxBytes)
		if err != nil {
			return err
		}
		start += done
	}
	return nil
}

// runChunk judges items [start, start+size) of src, in fewer items when
// their encoding exceeds maxBytes. It returns how many items it judged.
func (pl *pool) runChunk(ctx context.Context, kind uint32, now int64, start, size int, src items, out rules.Bits, maxBytes int) (int, error) {
	sub := src.slice(start, start+size)
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		in, err := pl.get(ctx)
		if err != nil {
			return 0, err
		}
		done, err := in.match(ctx, kind, now, sub, start, out, maxBytes)
		switch {
		case err == nil:
			pl.put(in, true)
			return done, nil
		case errors.Is(err, errTooBig):
			pl.put(in, true)
			return 0, err
		case errors.Is(err, ErrGuest):
			pl.v.plugin.stats.guestErrors.Add(1)
			pl.put(in, true)
			return 0, err
		case ctx.Err() != nil:
			pl.put(in, false)
			return 0, ctx.Err()
		}
		// A trap or a timeout: the instance is corrupt or closed.
		pl.put(in, false)
		if errors.Is(err, ErrTimeout) {
			pl.v.plugin.stats.timeouts.Add(1)
		} else {
			pl.v.plugin.stats.traps.Add(1)
		}
		pl.v.plugin.log.Warn("plugin instance discarded", "attempt", attempt+1, "err", err)
		lastErr = err
		if attempt == 0 {
			pl.v.plugin.stats.retries.Add(1)
		}
	}
	return 0, lastErr
}

// Status returns the status of plugin name.
func (r *Registry) Status(name string) (Status, bool) {
	r.mu.Lock()
	p := r.plugins[name]
	r.mu.Unlock()
	if p == nil {
		return Status{}, false
	}
	return p.status(), true
}

// Statuses returns the status of every plugin, sorted by name.
func (r *Registry) Statuses() []Status {
	r.mu.Lock()
	ps := make([]*plugin, 0, len(r.plugins))
	for _, p := range r.plugins {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	out := make([]Status, len(ps))
	for i, p := range ps {
		out[i] = p.status()
	}
	return out
}

func (p *plugin) status() Status {
	s := Status{Name: p.name}
	if v := p.acquire(); v != nil {
		s.File, s.Version = v.file, v.sum
		s.ABI = fmt.Sprintf("%d.%d", v.abi>>16, v.abi&0xffff)
		s.Events, s.Profiles = v.kinds&kindEvents != 0, v.kinds&kindProfiles != 0
		s.Manifest = v.man
		s.Interrupt = v.interruptMode()
		s.Instances = v.live()
		s.Pools = v.poolCount()
		v.release()
	}
	p.mu.Lock()
	s.State, s.LastError, s.LastErrorAt = p.state, p.lastErr, p.lastErrAt
	p.mu.Unlock()
	st := &p.stats
	s.Batches, s.Items = st.batches.Load(), st.items.Load()
	s.Timeouts, s.Traps, s.GuestErrors, s.Retries = st.timeouts.Load(), st.traps.Load(), st.guestErrors.Load(), st.retries.Load()
	s.FailedFast, s.SlowBatches = st.failFast.Load(), st.slow.Load()
	s.Instantiated, s.Recycled = st.instantiated.Load(), st.recycled.Load()
	s.LogLinesDropped = st.logDropped.Load()
	return s
}

// Close closes every plugin, instance and runtime. Batches still running
// fail; predicates return ErrClosed afterwards.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ps := r.plugins
	rts := r.runtimes
	r.mu.Unlock()
	for _, p := range ps {
		if v := p.cur.Swap(nil); v != nil {
			v.retire()
		}
		p.releaseHeld()
	}
	var errs []error
	for _, e := range rts {
		errs = append(errs, e.r.Close(ctx))
	}
	errs = append(errs, r.cache.Close(ctx))
	return errors.Join(errs...)
}
