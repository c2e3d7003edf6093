package cluster

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Reasons a lease ends, passed to Options.OnLose (match with errors.Is).
var (
	// ErrReleased: the host gave the partition back (Close, or a
	// rebalance towards a host that joined). OnLose runs before the key is
	// deleted, so the host can finish and flush before anyone takes over.
	ErrReleased = errors.New("lease released")
	// ErrExpired: the lease could not be renewed before its safe deadline
	// (NATS unreachable, KV leader lost too long). The host must already
	// have stopped writing: Valid turned false at the deadline.
	ErrExpired = errors.New("lease expired without renewal")
	// ErrTaken: a renewal found another holder on the key. With clocks
	// within the guard this cannot happen; it is reported, not hidden.
	ErrTaken = errors.New("lease taken by another holder")
)

// Lease is one held partition (or the host's own membership key). It is
// valid from its acquisition until Deadline, which every renewal pushes
// forward; writers must check Valid immediately before each write that
// others can see (a stream publish, a snapshot put, a reply).
type Lease struct {
	// Partition is N of Partitions (-1 for the host membership key).
	Partition  int
	Partitions int
	// Token is the key's revision at acquisition: the fencing token. It is
	// a stream sequence, so successive owners of a partition have
	// strictly increasing tokens; stamp it on what the owner writes so a
	// reader can ignore a deposed owner's late writes.
	Token uint64
	// Acquired is when the acquisition was confirmed (on Options.Now).
	Acquired time.Time

	key string
	now func() time.Time
	ttl time.Duration

	mu       sync.Mutex
	rev      uint64    // latest revision we wrote
	deadline time.Time // belief ends here unless renewed
	endedAt  time.Time // zero while held
	reason   error

	gained  chan struct{} // closed when OnGain returned
	release chan struct{} // closed to ask for a graceful release
	stopped chan struct{} // closed when the renewal goroutine ended
	done    chan struct{} // closed when the lease ended and OnLose returned
}

func newLease(key string, part, parts int, rev uint64, sent time.Time, ttl, guard time.Duration, now func() time.Time) *Lease {
	return &Lease{
		Partition: part, Partitions: parts, Token: rev,
		Acquired: now(),
		key:      key, now: now, ttl: ttl,
		rev: rev, deadline: safeDeadline(sent, ttl, guard),
		gained: make(chan struct{}), release: make(chan struct{}),
		stopped: make(chan struct{}), done: make(chan struct{}),
	}
}

// safeDeadline is the end of a lease whose write was SENT at sent: the
// server stamps the write no earlier than it receives it, and expires the
// key no earlier than stamp+ttl (by its clock), so until sent+ttl nobody
// else can create the key. The guard absorbs clock-rate drift between the
// host and the server, clock skew between servers when the KV leader
// moves, and the scheduling delay between a writer's Valid check and its
// write.
func safeDeadline(sent time.Time, ttl, guard time.Duration) time.Time {
	return sent.Add(ttl - guard)
}

// Valid reports whether the lease is still held: not ended and before its
// deadline on the injected clock. It turns false at the deadline even if
// the background renewal goroutine has not run yet.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.endedAt.IsZero() && l.now().Before(l.deadline)
}

// Deadline is the time the lease ends unless renewed.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Done is closed once the lease has ended (after OnLose returned).
func (l *Lease) Done() <-chan struct{} { return l.done }

// Ended is when the lease stopped being valid (the deadline, if it lapsed)
// and why; zero and nil while held.
func (l *Lease) Ended() (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.endedAt, l.reason
}

func (l *Lease) String() string {
	if l.Partition < 0 {
		return fmt.Sprintf("lease %s token %d", l.key, l.Token)
	}
	return fmt.Sprintf("lease p%dof%d token %d", l.Partition, l.Partitions, l.Token)
}

// renewed records a successful renewal sent at sent with revision rev. A
// renewal never shortens the lease.
func (l *Lease) renewed(rev uint64, sent time.Time, guard time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rev = rev
	if d := safeDeadline(sent, l.ttl, guard); d.After(l.deadline) {
		l.deadline = d
	}
}

func (l *Lease) revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// end marks the lease over (once), at the deadline if that has already
// passed, and reports whether this call ended it.
func (l *Lease) end(reason error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.endedAt.IsZero() {
		return false
	}
	t := l.now()
	if l.deadline.Before(t) {
		t = l.deadline
	}
	l.endedAt, l.reason = t, reason
	return true
}
