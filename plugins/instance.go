package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// Errors a batch can fail with; test them with errors.Is.
var (
	// ErrTimeout: the guest exceeded the per-batch deadline.
	ErrTimeout = errors.New("plugin exceeded its deadline")
	// ErrTrap: the guest trapped (a WebAssembly trap, a Go panic or fatal
	// error such as running out of memory, or proc_exit).
	ErrTrap = errors.New("plugin trapped")
	// ErrGuest: the guest reported an error through segd_error.
	ErrGuest = errors.New("plugin reported an error")
	// ErrFailed: the plugin is marked failed and fails fast.
	ErrFailed = errors.New("plugin is marked failed")
	// ErrClosed: the registry is closed.
	ErrClosed = errors.New("plugin registry is closed")

	errTooBig = errors.New("batch too big")
)

// ctxKey carries the calling instance to the host log function.
type ctxKey struct{}

// instance is one warm module instance, used by one goroutine at a time.
type instance struct {
	v      *version
	mod    api.Module
	mem    api.Memory
	alloc  api.Function
	init   api.Function
	matchF api.Function
	errFn  api.Function
	stack  [3]uint64
	bufPtr uint32
	bufCap uint32
	calls  int
	out    *tail
	errw   *tail
	enc    encoder
	// props are the properties batches carry (nil: all); see declareProps.
	props []string
	// deadlineAt is when the current call of an instrumented module must
	// stop; hostPreempt sets tripped when it stops it.
	deadlineAt time.Time
	tripped    bool
}

// newInstance instantiates the version's module and runs _initialize.
func (v *version) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{v: v}
	in.out = &tail{g: v.glog, level: slog.LevelInfo}
	in.errw = &tail{g: v.glog, level: slog.LevelWarn}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStdout(in.out).
		WithStderr(in.errw)
	// The sandbox is wazero's default: no FS mounts, no args or env, fake
	// walltime and nanotime, a deterministic random source, sleep no-op.
	initDeadline := max(v.deadline*20, 5*time.Second)
	if v.preempt {
		// No guest code runs while instantiating (preempt refuses start
		// sections): _initialize is called below, once the flag is held.
		cfg = cfg.WithStartFunctions()
	} else {
		cfg = cfg.WithStartFunctions("_initialize")
	}
	cctx, g := in.guard(ctx, initDeadline)
	mod, err := v.rt.r.InstantiateModule(cctx, v.compiled, cfg)
	tripped := g.stop()
	if err != nil {
		return nil, in.fault(ctx, "instantiate", err, tripped)
	}
	in.mod = mod
	in.mem = mod.Memory()
	in.alloc = mod.ExportedFunction("segd_alloc")
	in.init = mod.ExportedFunction("segd_init")
	in.matchF = mod.ExportedFunction("segd_match")
	in.errFn = mod.ExportedFunction("segd_error")
	for _, o := range v.man.Omit {
		switch o {
		case "user":
			in.enc.noUser = true
		case "name":
			in.enc.noName = true
		case "time":
			in.enc.noTime = true
		}
	}
	if in.mem == nil {
		in.close()
		return nil, fmt.Errorf("%w: module has no memory", ErrInvalid)
	}
	if v.preempt {
		if f := mod.ExportedFunction("_initialize"); f != nil {
			if err := in.invoke(ctx, "_initialize", f, initDeadline); err != nil {
				in.close()
				return nil, err
			}
		}
	}
	v.plugin.stats.instantiated.Add(1)
	return in, nil
}

// guard arms the deadline d for one guest call (and the caller's
// cancellation) and returns the context to call with and a guardStop,
// which disarms it and reports whether the deadline tripped. Instrumented
// modules (see plugins/internal/preempt) call hostPreempt every
// preemptBudget loop iterations and function entries, which stops them past
// the deadline; others are stopped by wazero's context-done checks when
// interrupts are on, and not at all when they are off. The context also
// carries the instance, for the host functions.
func (in *instance) guard(ctx context.Context, d time.Duration) (context.Context, guardStop) {
	cctx := context.WithValue(ctx, ctxKey{}, in)
	switch {
	case in.v.preempt:
		in.deadlineAt, in.tripped = time.Now().Add(d), false
		return cctx, guardStop{in: in, parent: ctx}
	case in.v.key.rt.interrupt:
		tctx, cancel := context.WithTimeout(cctx, d)
		return tctx, guardStop{parent: ctx, timed: tctx, cancel: cancel}
	}
	return cctx, guardStop{}
}

// guardStop disarms what guard armed; a value, so that guarding a call
// allocates nothing more than the context.
type guardStop struct {
	in     *instance // checks: the instance whose deadline hostPreempt reads
	parent context.Context
	timed  context.Context // wazero: the context with the deadline
	cancel context.CancelFunc
}

// stop disarms the deadline and reports whether it interrupted the call
// (not counting the caller's own cancellation).
func (g guardStop) stop() bool {
	switch {
	case g.in != nil:
		tripped := g.in.tripped && g.parent.Err() == nil
		g.in.tripped = false
		return tripped
	case g.cancel != nil:
		tripped := errors.Is(g.timed.Err(), context.DeadlineExceeded)
		g.cancel()
		return tripped
	}
	return false
}

// preemptBudget is how many loop iterations and function entries an
// instrumented guest runs between calls to hostPreempt. Each call costs
// about 0.1 us; 8192 iterations take 10-100 us, so the deadline costs well
// under 1% and is enforced (and a garbage collection waits) within that.
const preemptBudget = 8192

// hostPreempt implements the segd.preempt import that
// plugins/internal/preempt adds: 0 stops the guest (past the deadline, or
// when the caller gave up), anything else is its next budget.
func hostPreempt(ctx context.Context, stack []uint64) {
	stack[0] = preemptBudget
	in, _ := ctx.Value(ctxKey{}).(*instance)
	if in == nil {
		return // not a guarded call (never happens: every call is)
	}
	if ctx.Err() != nil || time.Now().After(in.deadlineAt) {
		in.tripped = true
		stack[0] = 0
	}
}

// invoke calls f with in.stack under the deadline d; a failure becomes
// ErrTimeout, ErrTrap or the caller's context error.
func (in *instance) invoke(ctx context.Context, op string, f api.Function, d time.Duration) error {
	cctx, g := in.guard(ctx, d)
	err := f.CallWithStack(cctx, in.stack[:])
	tripped := g.stop()
	if err != nil {
		return in.fault(ctx, op, err, tripped)
	}
	return nil
}

// fault turns an error from a guest call into ErrTimeout, ErrTrap or the
// caller's context error, attaching the guest's stderr tail. tripped says
// that the deadline interrupted the call.
func (in *instance) fault(parent context.Context, op string, err error, tripped bool) error {
	if perr := parent.Err(); perr != nil {
		return perr
	}
	var exit *sys.ExitError
	if tripped || errors.As(err, &exit) && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded ||
		exit.ExitCode() == sys.ExitCodeContextCanceled) {
		return fmt.Errorf("%w: %s did not finish within %v", ErrTimeout, op, in.v.deadline)
	}
	// wazero's message starts with the trap ("wasm error: unreachable"),
	// followed by a stack trace; the guest's stderr (a Go panic or fatal
	// error) says why. The error keeps the first line of each; the log gets
	// everything.
	full := err.Error()
	msg, _, _ := strings.Cut(full, "\n")
	stderr := in.errw.text()
	if stderr != "" {
		head, _, _ := strings.Cut(stderr, "\n\n")
		msg += "; guest stderr: " + strings.ReplaceAll(head, "\n", " ")
	}
	in.v.plugin.log.Debug("plugin fault details", "op", op, "err", full, "stderr", stderr)
	return fmt.Errorf("%w in %s: %s", ErrTrap, op, msg)
}

// guestError reads the message of segd_error.
func (in *instance) guestError(ctx context.Context, op string) error {
	msg := "(no message)"
	if err := in.invoke(ctx, "segd_error", in.errFn, in.v.deadline); err == nil && in.stack[0] != 0 {
		p, l := uint32(in.stack[0]>>32), uint32(in.stack[0])
		if b, ok := in.mem.Read(p, min(l, 4096)); ok {
			msg = string(b)
		}
	}
	return fmt.Errorf("%w: %s: %s", ErrGuest, op, msg)
}

// reserve makes sure the guest buffer holds n bytes and returns its address.
func (in *instance) reserve(ctx context.Context, n uint32) (uint32, error) {
	if n <= in.bufCap && in.bufPtr != 0 {
		return in.bufPtr, nil
	}
	in.stack[0] = uint64(n)
	if err := in.invoke(ctx, "segd_alloc", in.alloc, in.v.deadline); err != nil {
		return 0, err
	}
	p := uint32(in.stack[0])
	if p == 0 || p%8 != 0 || uint64(p)+uint64(n) > uint64(in.mem.Size()) {
		return 0, fmt.Errorf("%w: segd_alloc(%d) returned %#x, not an 8-aligned region inside the %d-byte memory", ErrTrap, n, p, in.mem.Size())
	}
	in.bufPtr, in.bufCap = p, n
	return p, nil
}

// initParams calls segd_init with the rule's parameters.
func (in *instance) initParams(ctx context.Context, params []byte) error {
	p, err := in.reserve(ctx, uint32(max(len(params), 8)))
	if err != nil {
		return err
	}
	in.mem.Write(p, params)
	in.stack[0], in.stack[1] = uint64(p), uint64(len(params))
	if err := in.invoke(ctx, "segd_init", in.init, max(in.v.deadline*10, time.Second)); err != nil {
		return err
	}
	if int32(in.stack[0]) != 0 {
		return in.guestError(ctx, "segd_init")
	}
	return in.declareProps(ctx)
}

// maxPropsJSON caps the segd_props answer.
const maxPropsJSON = 64 << 10

// declareProps settles which properties batches carry: the plugin's
// segd_props list (ABI 1.1), capped by the manifest's props; the manifest's
// alone; or, with neither, every property (nil).
func (in *instance) declareProps(ctx context.Context) error {
	man := in.v.man.Props
	if len(man) == 0 {
		man = nil
	}
	in.props = man
	f := in.mod.ExportedFunction("segd_props")
	if f == nil {
		return nil
	}
	if err := in.invoke(ctx, "segd_props", f, in.v.deadline); err != nil {
		return err
	}
	if in.stack[0] == 0 {
		return nil // no declaration: everything the manifest allows
	}
	ptr, n := uint32(in.stack[0]>>32), uint32(in.stack[0])
	raw, ok := in.mem.Read(ptr, n)
	if !ok || n > maxPropsJSON {
		return fmt.Errorf("%w: segd_props returned %d bytes at %#x: outside memory or over %d bytes", ErrGuest, n, ptr, maxPropsJSON)
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil || names == nil {
		return fmt.Errorf("%w: segd_props: want a JSON array of property names, got %.80q", ErrGuest, raw)
	}
	// Each key once: the batch's key table has a column per entry, so a
	// repeat would be sent (and sized) again for nothing.
	names = uniqueInOrder(names)
	if man == nil {
		in.props = names
		return nil
	}
	in.props = []string{}
	for _, name := range names {
		if slices.Contains(man, name) {
			in.props = append(in.props, name)
		}
	}
	return nil
}

// uniqueInOrder drops the repeats of names, keeping each first one where
// it was.
func uniqueInOrder(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := names[:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// match encodes items src (at most the whole of it; fewer when the encoding
// exceeds maxBytes) straight into the guest's buffer, judges them in one
// segd_match call and sets the matching bits of out at offset start. It
// returns how many items it judged.
func (in *instance) match(ctx context.Context, kind uint32, now int64, src items, start int, out []uint64, maxBytes int) (int, error) {
	props := in.props
	n := src.len()
	var batch []byte
	var p uint32
	for {
		words := (n + 63) / 64
		k := len(props)
		if props == nil {
			k = len(in.enc.keys) // the last batch's key count, as a guess
		}
		// Room for the fixed part, the answer and some heap; the guess only
		// has to be good enough for the encoding to land in place.
		need := fixedSize(n, k) + 8*words + 32*n + 64
		var err error
		if p, err = in.reserve(ctx, uint32(min(need, maxBytes+8*words+8))); err != nil {
			return 0, err
		}
		view, ok := in.mem.Read(p, in.bufCap)
		if !ok {
			return 0, fmt.Errorf("%w: buffer outside memory", ErrTrap)
		}
		limit := max(int(in.bufCap)-8*words-8, 0)
		batch = in.enc.encode(view[:0:limit], kind, now, src, props)
		if len(batch) > maxBytes {
			if n > 1 {
				n = (n + 1) / 2
				src = src.slice(0, n)
				continue
			}
			return 0, fmt.Errorf("%w: item %d encodes to %d bytes, over the %d-byte batch limit", errTooBig, start, len(batch), maxBytes)
		}
		if len(batch) > 0 && len(view) > 0 && &batch[0] == &view[0] {
			break // encoded in place
		}
		// The buffer was short: grow it (with slack) and copy.
		bl := align8(len(batch)) + 8*words
		if p, err = in.reserve(ctx, uint32(bl+bl/4)); err != nil {
			return 0, err
		}
		view, ok = in.mem.Read(p, uint32(len(batch)))
		if !ok {
			return 0, fmt.Errorf("%w: buffer outside memory", ErrTrap)
		}
		copy(view, batch)
		break
	}
	return n, in.call(ctx, p, len(batch), n, start, out)
}

// call runs segd_match over the batch of len bytes and n items at p (with
// room for the answer after it) and ORs the answer into out at start.
func (in *instance) call(ctx context.Context, p uint32, length, n, start int, out []uint64) error {
	words := (n + 63) / 64
	bl := align8(length)
	ans, ok := in.mem.Read(p+uint32(bl), uint32(8*words))
	if !ok {
		return fmt.Errorf("%w: answer outside memory", ErrTrap)
	}
	clear(ans)
	if pad, ok := in.mem.Read(p+uint32(length), uint32(bl-length)); ok {
		clear(pad)
	}
	in.calls++
	in.errw.reset()
	in.stack[0], in.stack[1], in.stack[2] = uint64(p), uint64(length), uint64(p)+uint64(bl)
	t0 := time.Now()
	if err := in.invoke(ctx, "segd_match", in.matchF, in.v.deadline); err != nil {
		return err
	}
	if el := time.Since(t0); el > in.v.deadline {
		// Only reachable with interrupts off: report, do not fail.
		in.v.plugin.stats.slow.Add(1)
		in.v.plugin.log.Warn("plugin batch exceeded its deadline (interrupt is off)", "took", el, "deadline", in.v.deadline)
	}
	if int32(in.stack[0]) != 0 {
		return in.guestError(ctx, "segd_match")
	}
	// The view may be stale if the guest grew its memory: read again.
	ans, ok = in.mem.Read(p+uint32(bl), uint32(8*words))
	if !ok {
		return fmt.Errorf("%w: answer outside memory", ErrTrap)
	}
	for w := 0; w < words; w++ {
		x := le.Uint64(ans[8*w:])
		if w == words-1 && n%64 != 0 {
			x &= 1<<(uint(n)%64) - 1
		}
		if start%64 == 0 {
			out[start/64+w] |= x
			continue
		}
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := start + 64*w + b
			out[i>>6] |= 1 << (uint(i) & 63)
		}
	}
	return nil
}

// worn reports whether the instance should be recycled rather than reused.
func (in *instance) worn() bool {
	return in.calls >= in.v.man.RecycleCalls || in.mem.Size() > uint32(in.v.man.RecycleMemoryMiB)<<20
}

func (in *instance) close() {
	if in.mod != nil {
		_ = in.mod.Close(context.Background())
	}
}

// pool holds the warm instances of one version for one parameter set.
type pool struct {
	v      *version
	params []byte
	idle   chan *instance
	slots  chan struct{} // one token per live instance
	live   atomic.Int64
	// used is when the pool was last asked for (version.uses' stamp).
	used   atomic.Int64
	mu     sync.Mutex
	closed bool
}

func newPool(v *version, params []byte) *pool {
	return &pool{
		v:      v,
		params: params,
		idle:   make(chan *instance, v.man.Instances),
		slots:  make(chan struct{}, v.man.Instances),
	}
}

// prewarm starts the manifest's Prewarm instances (at least one, so that bad
// parameters are reported at once).
func (p *pool) prewarm(ctx context.Context) error {
	for range max(p.v.man.Prewarm, 1) {
		p.slots <- struct{}{}
		in, err := p.create(ctx)
		if err != nil {
			<-p.slots
			return err
		}
		p.idle <- in
	}
	return nil
}

// create instantiates and initialises one instance; the caller holds a slot.
func (p *pool) create(ctx context.Context) (*instance, error) {
	in, err := p.v.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	if err := in.initParams(ctx, p.params); err != nil {
		in.close()
		return nil, err
	}
	p.live.Add(1)
	return in, nil
}

// get returns an idle instance, starts a new one if the pool has room, or
// waits for one to come back.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	select {
	case in := <-p.idle:
		return in, nil
	case p.slots <- struct{}{}:
		in, err := p.create(ctx)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put returns an instance; a broken, worn or orphaned one is closed instead.
func (p *pool) put(in *instance, healthy bool) {
	if healthy && in.worn() {
		p.v.plugin.stats.recycled.Add(1)
		healthy = false
	}
	p.mu.Lock()
	if !healthy || p.closed {
		p.mu.Unlock()
		in.close()
		p.live.Add(-1)
		<-p.slots
		return
	}
	p.idle <- in
	p.mu.Unlock()
}

// close closes the idle instances; busy ones are closed when put back.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case in := <-p.idle:
			in.close()
			p.live.Add(-1)
			<-p.slots
		default:
			return
		}
	}
}
