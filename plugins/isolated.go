package plugins

import (
	"context"
	"fmt"

	"github.com/segd/segd/rules"
)

// isolatedKey marks a context whose batches are a request's own.
type isolatedKey struct{}

// Isolated returns ctx marked so that the batches judged under it are a
// request's own (segment.preview replaying the log): their failures are
// returned to the caller but do not count toward the plugin's health. A
// request's parameters, or old batches it replays that once failed, could
// otherwise get the plugin marked failed, and its saved segments' batches
// failing fast, for everyone. A plugin already marked failed fails them
// fast, and they never take its recovery probe.
func Isolated(ctx context.Context) context.Context {
	return context.WithValue(ctx, isolatedKey{}, true)
}

func isolated(ctx context.Context) bool { return ctx.Value(isolatedKey{}) != nil }

// matchIsolated is match for an isolated batch: the same work and
// counters, without the health gate's probe and without an outcome.
func (p *plugin) matchIsolated(ctx context.Context, pinned *version, kind uint32, params []byte, src items, out rules.Bits) error {
	p.mu.Lock()
	failed, lastErr := p.state == StateFailed, p.lastErr
	p.mu.Unlock()
	if failed {
		p.stats.failFast.Add(1)
		return fmt.Errorf("plugin %s: %w: %s", p.name, ErrFailed, lastErr)
	}
	v := p.acquireFor(pinned)
	if v == nil {
		return fmt.Errorf("plugin %s is not loaded", p.name)
	}
	defer v.release()
	if err := v.match(ctx, kind, params, src, out); err != nil {
		if ctx.Err() != nil {
			p.stats.canceledByHost.Add(1)
			return err
		}
		return fmt.Errorf("plugin %s: %w", p.name, err)
	}
	p.stats.batches.Add(1)
	p.stats.items.Add(uint64(src.len()))
	return nil
}
