package plugins

// Unload removes plugin name from the registry: rules compiled afterwards
// cannot name it, and its current version closes once its last batch
// returns (predicates still holding it fail their batches, so the host
// unloads only a plugin no segment names). It reports whether the plugin
// was known.
func (r *Registry) Unload(name string) bool {
	r.mu.Lock()
	p := r.plugins[name]
	delete(r.plugins, name)
	r.mu.Unlock()
	if p == nil {
		return false
	}
	if v := p.cur.Swap(nil); v != nil {
		v.retire()
	}
	p.releaseHeld()
	p.log.Info("plugin unloaded")
	return true
}
