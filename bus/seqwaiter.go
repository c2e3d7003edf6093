package bus

import (
	"context"
	"sync"
	"sync/atomic"
)

// SeqWaiter lets goroutines wait until a stream sequence has been applied:
// an upload's reply waits for its own message to reach the engine. The
// zero value is ready to use; it is safe for concurrent use.
type SeqWaiter struct {
	mu sync.Mutex
	// last is written under mu and read without it: Last is on the path
	// of every membership answer (is the replay over?), which must not
	// wait for the writer's Applied.
	last atomic.Uint64
	ch   chan struct{} // closed and replaced on every advance
}

// chLocked returns the channel of the next advance, making it on first use.
func (w *SeqWaiter) chLocked() chan struct{} {
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// Applied records that every sequence up to seq is applied.
func (w *SeqWaiter) Applied(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq > w.last.Load() {
		w.last.Store(seq)
		close(w.chLocked())
		w.ch = make(chan struct{})
	}
}

// Changed returns a channel closed at the next advance.
func (w *SeqWaiter) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.chLocked()
}

// Last returns the last sequence applied, without waiting.
func (w *SeqWaiter) Last() uint64 { return w.last.Load() }

// Wait returns once seq is applied, or with ctx's error.
func (w *SeqWaiter) Wait(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		last, ch := w.last.Load(), w.chLocked()
		w.mu.Unlock()
		if last >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
