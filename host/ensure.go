package host

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/cluster"
)

// Hosts that start together on a fresh cluster create the same streams
// and buckets at once, each replicated: a create that meets another's
// may time out while the meta leader places the replicas, or find the
// stream "not found" on a node where it is not up yet. Those are worth
// trying again; a segd that exited on them (all three hosts of
// TestThreeHostsTwelvePartitions did, with "plugins bucket SEGD_PLUGINS:
// context deadline exceeded") would need an operator to start it again.

// Bounds of ensureRetry.
const (
	// ensureAttempt bounds one create or open: a request to a stream
	// without a leader is dropped, not refused.
	ensureAttempt = 10 * time.Second
	// ensureWait bounds the retries of one stream or bucket.
	ensureWait = 2 * time.Minute
)

// ensureRetry runs f, which creates or opens the stream or bucket named
// what, until it succeeds, fails for a reason other than a transient one,
// ctx ends or ensureWait has passed. Each retry is logged: a start that
// waits here says on what.
func ensureRetry[T any](ctx context.Context, log *slog.Logger, what string, f func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(ensureWait)
	for {
		actx, cancel := context.WithTimeout(ctx, ensureAttempt)
		v, err := f(actx)
		cancel()
		if err == nil || !retryableAtStart(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return v, err
		}
		log.Warn("creating or opening a stream or bucket failed; trying again (another host may be creating it)",
			"what", what, "error", err, "gives_up_at", deadline.Format(time.RFC3339))
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// retryableAtStart reports a failure of creating or opening a stream or
// bucket that another host's concurrent create explains.
func retryableAtStart(err error) bool {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false // a 503 too, but no other host's doing: say so at once
	}
	var apiErr *jetstream.APIError
	return cluster.Transient(err) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound)
}
