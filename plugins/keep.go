package plugins

import (
	"context"
	"slices"
)

// A new version of a plugin swaps like a rule change (host/plugin_admin.go):
// the segments naming the plugin are rebuilt from the log with the new
// version while they keep serving what the previous one judged. So the
// previous version must keep judging the live batches of the predicates
// compiled with it, while predicates compiled afterwards (the rebuild's)
// use the new one. LoadKeeping does that: each predicate is pinned to the
// version current when it was made, and the previous version stays
// instantiated until the host, once every segment naming the plugin has
// swapped, calls ReleasePrevious. A predicate whose version was released
// falls forward to the current one, so a predicate the host never closed
// pins no module.

// LoadKeeping is Load, except that the version it replaces keeps judging
// the batches of the predicates made before, until ReleasePrevious.
// Predicates made afterwards use the new version.
func (r *Registry) LoadKeeping(ctx context.Context, name string, wasm []byte, m Manifest) error {
	return r.load(ctx, name, "", name+".wasm", wasm, m, true)
}

// ReleasePrevious retires the previous versions of plugin name that
// LoadKeeping kept: the predicates pinned to them use the current version
// from now on, and each closes once its last batch returns. It returns the
// versions released.
func (r *Registry) ReleasePrevious(name string) []string {
	r.mu.Lock()
	p := r.plugins[name]
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.releaseHeld()
}

// Previous lists the previous versions of plugin name that still run for
// the predicates made with them (LoadKeeping), oldest first.
func (r *Registry) Previous(name string) []string {
	r.mu.Lock()
	p := r.plugins[name]
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.held))
	for i, v := range p.held {
		out[i] = v.sum
	}
	return out
}

func (p *plugin) releaseHeld() []string {
	p.mu.Lock()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	out := make([]string, len(held))
	for i, v := range held {
		out[i] = v.sum
		v.retire()
	}
	if len(held) > 0 {
		p.log.Info("previous plugin versions released", "versions", out)
	}
	return out
}

// versions are the current version and the held ones.
func (p *plugin) versions() []*version {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.held)
	if v := p.cur.Load(); v != nil {
		out = append(out, v)
	}
	return out
}

// pin holds v for one batch, unless it is retired.
func (v *version) pin() bool {
	v.inflight.Add(1)
	if !v.retired.Load() {
		return true
	}
	v.release()
	return false
}

// acquireFor pins the version a predicate was made with if it still runs,
// else the current one (nil if none).
func (p *plugin) acquireFor(pinned *version) *version {
	if pinned != nil && pinned.pin() {
		return pinned
	}
	return p.acquire()
}

// PluginVersion is the version (hex sha256) that judges the predicate's
// batches now: the one it was made with while it runs, else the current.
func (e *eventPredicate) PluginVersion() string { return (*predicate)(e).version() }

// PluginVersion is the version that judges the predicate's batches now;
// see eventPredicate's.
func (e *profilePredicate) PluginVersion() string { return (*predicate)(e).version() }

func (pr *predicate) version() string {
	v := pr.p.acquireFor(pr.v)
	if v == nil {
		return ""
	}
	defer v.release()
	return v.sum
}
