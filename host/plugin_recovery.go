package host

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/rules"
)

// pluginRecovery brings stale segments back (see host/engine/recovery.go):
// a segment whose plugin could not judge a batch is not served until it is
// rebuilt from the retained log, which this loop starts once the plugin
// judges a batch again or gets a new version (plugins.Registry.OnUsable),
// one rebuild at a time, beside live ingest.
type pluginRecovery struct {
	mu sync.Mutex
	// pending are the plugins reported usable since the loop last looked,
	// true for a new version.
	pending map[string]bool
	wake    chan struct{}
	done    chan struct{}
}

// Bounds of the loop's wait for a back-off to end, on the wall clock
// (the back-off itself is on the engine's clock).
const (
	minRecoveryWait = 100 * time.Millisecond
	maxRecoveryWait = 10 * time.Minute
)

// usable is the registry's OnUsable: it runs inside a plugin call, so it
// only queues the news and wakes the loop.
func (pr *pluginRecovery) usable(name string, newVersion bool) {
	pr.mu.Lock()
	pr.pending[name] = pr.pending[name] || newVersion
	pr.mu.Unlock()
	select {
	case pr.wake <- struct{}{}:
	default:
	}
}

func (pr *pluginRecovery) take() map[string]bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := pr.pending
	pr.pending = map[string]bool{}
	return out
}

// startPluginRecovery starts the loop; Close stops it with ctx.
func (s *Server) startPluginRecovery(ctx context.Context) {
	pr := &pluginRecovery{pending: map[string]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.recovery = pr
	if s.plugins != nil && s.front == nil { // a front fans the news out to its partitions'
		s.plugins.OnUsable(pr.usable)
	}
	go s.runPluginRecovery(ctx, pr)
}

// runPluginRecovery waits for the rebuild at start, then, whenever a
// plugin reports in or a back-off ends, hands the news to the engine and
// runs the rebuild it asks for.
func (s *Server) runPluginRecovery(ctx context.Context, pr *pluginRecovery) {
	defer close(pr.done)
	if s.rebuildDone != nil {
		select {
		case <-s.rebuildDone:
		case <-ctx.Done():
			return
		}
	}
	timer := time.NewTimer(maxRecoveryWait)
	defer timer.Stop()
	for {
		news := pr.take()
		var rb *engine.Rebuild
		var next time.Time
		err := s.engine.Do(ctx, func() error {
			for name, newVersion := range news {
				s.engine.PluginUsable(name, newVersion)
			}
			var err error
			rb, next, err = s.engine.StartRecovery()
			return err
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.cfg.Logger.Error("recovering stale segments", "error", err)
		}
		if rb != nil {
			s.runRecoveryRebuild(ctx, rb)
			continue // the next may be due already
		}
		wait := maxRecoveryWait
		if !next.IsZero() {
			wait = min(max(next.Sub(s.engine.Now()), minRecoveryWait), maxRecoveryWait)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-pr.wake:
			timer.Stop() // Go 1.23 timers: Reset after Stop sees no stale tick
		case <-timer.C:
		}
	}
}

// runRecoveryRebuild reads the log into a recovery rebuild; if the log
// cannot be read the rebuild is aborted, leaving its segments stale to be
// tried again after the back-off.
func (s *Server) runRecoveryRebuild(ctx context.Context, rb *engine.Rebuild) {
	start := time.Now()
	res, err := func() (engine.RebuildResult, error) {
		src, err := s.readLog(ctx, rb.FromSeq(), rb.ToSeq())
		if err != nil {
			return engine.RebuildResult{}, err
		}
		defer src.Close()
		return rb.Run(ctx, src)
	}()
	if ctx.Err() != nil {
		return // shutting down: a snapshot marks them stale for the next start
	}
	if err != nil {
		s.abortRebuild(ctx, rb, err)
		return
	}
	s.cfg.Logger.Info("recovery rebuild from the event log done", "segments", res.Segments, "from_seq", res.FromSeq, "to_seq", res.ToSeq,
		"messages", res.Messages, "live_messages", res.Live, "took", time.Since(start).Round(time.Millisecond))
}

// abortRebuild returns a rebuild's segments to stale after an error, so
// that the engine can rebuild them (and others) again.
func (s *Server) abortRebuild(ctx context.Context, rb *engine.Rebuild, cause error) {
	if err := s.engine.Do(ctx, func() error { rb.Abort(cause); return nil }); err != nil && ctx.Err() == nil {
		s.cfg.Logger.Error("aborting a rebuild", "error", err)
	}
}

// stopPluginRecovery waits for the loop, once its context has ended.
func (s *Server) stopPluginRecovery() {
	if s.recovery == nil {
		return
	}
	<-s.recovery.done
	if s.plugins != nil {
		s.plugins.OnUsable(nil)
	}
}

// pluginVersions is the part of a segment's fingerprint its source does
// not say: the versions of the plugins its rule names (those of the
// segments it reads enter through their fingerprints).
func (s *Server) pluginVersions(seg *rules.Segment) string {
	names := engine.SegmentPlugins(seg)
	if s.plugins == nil || len(names) == 0 {
		return ""
	}
	var b strings.Builder
	for _, name := range names {
		st, _ := s.plugins.Status(name)
		fmt.Fprintf(&b, "%s=%s;", name, st.Version)
	}
	return b.String()
}
