package plugins

// OnUsable sets fn to be told when a plugin may judge batches it failed
// before: newVersion false when a batch succeeded after a failed one, true
// when Load swapped in a new version. The host rebuilds the segments the
// failures left stale (docs/plugins.md). fn runs on the goroutine of that
// batch or load, inside the caller's evaluation, so it must return at once
// (queue the news); nil turns it off.
func (r *Registry) OnUsable(fn func(name string, newVersion bool)) {
	if fn == nil {
		r.onUsable.Store(nil)
		return
	}
	r.onUsable.Store(&fn)
}

func (r *Registry) usable(name string, newVersion bool) {
	if fn := r.onUsable.Load(); fn != nil {
		(*fn)(name, newVersion)
	}
}

// PluginName names the plugin behind the predicate, so that the host can
// tell which plugins a rule runs (its fingerprint, its recovery).
func (e *eventPredicate) PluginName() string { return e.p.name }

// PluginName names the plugin behind the predicate; see eventPredicate's.
func (e *profilePredicate) PluginName() string { return e.p.name }
