package scatter

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
)

// Scatter answers over every partition: it implements bus.Membership,
// bus.SegmentStore and bus.Analyzer (and user.get through UserGet) by
// sending point requests to the user's partition and merging the
// partitions' answers to the others. Its methods are safe from any number
// of goroutines, as its Parts' must be.
type Scatter struct {
	parts []Part
	// inProcess is set when every Part answers in this process (Local).
	inProcess bool
	// sem bounds the partitions one request queries at the same time.
	sem chan struct{}
}

// Options configures a Scatter.
type Options struct {
	// Parallel bounds how many partitions in this process one request
	// queries at the same time (default GOMAXPROCS): local partitions
	// compete for the cores, and a funnel already uses every core in each.
	// Partitions elsewhere are all asked at once.
	Parallel int
}

// New returns the merged view of parts; parts[p] is partition p, so
// len(parts) is P. P must be between 1 and MaxPartitions.
func New(parts []Part, opts Options) (*Scatter, error) {
	if len(parts) == 0 || len(parts) > MaxPartitions {
		return nil, fmt.Errorf("scatter: %d partitions; want 1 to %d", len(parts), MaxPartitions)
	}
	for p, part := range parts {
		if part == nil {
			return nil, fmt.Errorf("scatter: partition %d of %d is nil", p, len(parts))
		}
	}
	if opts.Parallel <= 0 {
		opts.Parallel = runtime.GOMAXPROCS(0)
	}
	s := &Scatter{parts: append([]Part(nil), parts...), sem: make(chan struct{}, opts.Parallel), inProcess: true}
	for _, p := range parts {
		if _, ok := p.(interface{ inProcess() }); !ok {
			s.inProcess = false
		}
	}
	return s, nil
}

// Partitions is P.
func (s *Scatter) Partitions() int { return len(s.parts) }

// Part returns partition p.
func (s *Scatter) Part(p int) Part { return s.parts[p] }

// partOf returns the partition that owns user.
func (s *Scatter) partOf(user string) Part { return s.parts[s.indexOf(user)] }

// indexOf returns the number of the partition that owns user.
func (s *Scatter) indexOf(user string) int { return ingest.Partition(user, len(s.parts)) }

// PartError is a partition's error, which the merged answer returns as its
// own: its code is the partition's (errors.As and errors.Is see through
// it), its text names the partition.
type PartError struct {
	Partition, Partitions int
	Err                   error
}

// Error names the partition, then says what it answered.
func (e *PartError) Error() string {
	return fmt.Sprintf("partition %d of %d: %v", e.Partition, e.Partitions, e.Err)
}

// Unwrap returns the partition's error.
func (e *PartError) Unwrap() error { return e.Err }

// partErr names partition p in err. With one partition, and for a 400
// (the request's fault, the same from every partition), err is returned
// as it is.
func (s *Scatter) partErr(p int, err error) error {
	if err == nil || len(s.parts) == 1 {
		return err
	}
	var ce *ingest.Error
	if errors.As(err, &ce) && ce.Code == api.CodeBadRequest {
		return err
	}
	return &PartError{Partition: p, Partitions: len(s.parts), Err: err}
}

// unavailable is the 503 of a merge that cannot be exact.
func unavailable(format string, args ...any) error {
	return &ingest.Error{Code: api.CodeUnavailable, Err: fmt.Errorf(format, args...)}
}

// each calls fn for every partition, at most Options.Parallel at a time,
// and returns once all have returned. The first failure cancels the calls
// still running; the error returned is that of the lowest partition that
// failed by itself (not by that cancellation), named by partErr.
func (s *Scatter) each(ctx context.Context, fn func(ctx context.Context, p int, part Part) error) error {
	if len(s.parts) == 1 {
		return fn(ctx, 0, s.parts[0])
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errs := make([]error, len(s.parts))
	done := make(chan struct{}, len(s.parts))
	for p, part := range s.parts {
		// Only partitions in this process compete for the cores; one
		// elsewhere is a request to wait for, asked at once.
		_, local := part.(interface{ inProcess() })
		if local {
			select {
			case s.sem <- struct{}{}:
			case <-ctx.Done():
				errs[p] = context.Cause(ctx)
				done <- struct{}{}
				continue
			}
		}
		go func() {
			defer func() {
				if local {
					<-s.sem
				}
				done <- struct{}{}
			}()
			if err := ctx.Err(); err != nil {
				errs[p] = context.Cause(ctx)
				return
			}
			if err := fn(ctx, p, part); err != nil {
				errs[p] = err
				cancel(errPartFailed)
			}
		}()
	}
	for range s.parts {
		<-done
	}
	var first error
	for p, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, errPartFailed), errors.Is(err, context.Canceled) && errors.Is(context.Cause(ctx), errPartFailed):
			// Cancelled because another partition failed.
		default:
			return s.partErr(p, err)
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// eachQuick is each for the calls that read a few counters or ids: when
// every partition is in this process they cost less than starting a
// goroutine (a segment count: about 1 µs by itself, 10 µs more on
// goroutines), so they run one after the other, stopping at the first
// error; partitions elsewhere are still asked all at once.
func (s *Scatter) eachQuick(fn func(ctx context.Context, p int, part Part) error) error {
	if !s.inProcess {
		return s.each(context.Background(), fn)
	}
	for p, part := range s.parts {
		if err := fn(context.Background(), p, part); err != nil {
			return s.partErr(p, err)
		}
	}
	return nil
}

// errPartFailed is the cause of the cancellation of the other partitions'
// calls once one has failed.
var errPartFailed = errors.New("another partition failed")
