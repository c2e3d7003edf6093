package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// This file is the change feed's publisher: its bounded queue, the waits
// it imposes on ingest (backpressure), and the in-order retries; the
// stream, the resume point and the message format are in changes.go.

// ChangeFeedOptions configures StartChangeFeed.
type ChangeFeedOptions struct {
	// ResumeAfter suppresses the changes of steps whose sequence is below
	// it: an earlier run published them (changes at exactly that sequence
	// are published again and deduplicated by their Nats-Msg-Id). See
	// FeedResumePoint.
	ResumeAfter uint64
	// MaxBacklog bounds the bytes of encoded changes waiting to be stored
	// (default DefaultFeedBacklog): past it, Add waits for JetStream, so
	// ingest slows to the pace the feed is stored at instead of dropping
	// changes or growing without bound.
	MaxBacklog int
	// MaxMessage bounds the body of one change message (default 64 KiB);
	// MaxPayload is the connection's max payload, which no message may
	// exceed (default: read from the connection).
	MaxMessage, MaxPayload int
	// MaxInFlight bounds the bytes published and not yet acknowledged
	// (default 4 MiB).
	MaxInFlight int
	// AckTimeout is how long a publish may wait for its acknowledgement
	// before it is retried (default 30s).
	AckTimeout time.Duration
	// Logger receives warnings (nil: slog.Default()).
	Logger *slog.Logger
	// Partition, when set (PartitionName), makes this one partition's
	// feed: its messages' Nats-Msg-Id starts with it, so that two
	// partitions' changes at one sequence never deduplicate each other,
	// and they carry it in HeaderPartition, where FeedResumePointOf finds
	// them.
	Partition string
	// PublishLock, shared by the feeds of the partitions of one segd,
	// makes each window of messages reach SEGD_CHANGES whole: a window
	// keeps its order by expecting each message's predecessor to be the
	// stream's last (see publish), which another feed's messages in
	// between would break.
	PublishLock *FeedLock
	// OtherHosts says that feeds of other processes publish into
	// SEGD_CHANGES at the same time (hosts sharing the partitions), which
	// no PublishLock orders with this one's: the feed then has one message
	// in flight at a time. In a window, message i+1 expects the stream's
	// last sequence to be one past message i's expectation; another
	// host's message stored between them refuses i but lets i+1 in, out
	// of order (TestFeedsOfTwoHostsKeepOrder: a user left a segment
	// before entering it).
	OtherHosts bool
}

// FeedLock is shared by the change feeds of the partitions of one segd
// (ChangeFeedOptions.PublishLock): one publishes at a time, and it keeps
// the stream's last sequence as the last of them saw it.
type FeedLock struct {
	sync.Mutex
	last  uint64 // SEGD_CHANGES' last sequence, when known
	known bool
}

// HeaderPartition names the partition (PartitionName) whose feed stored
// a change message, when segd runs more than one.
const HeaderPartition = "Segd-Partition"

// DefaultFeedBacklog is the default ChangeFeedOptions.MaxBacklog: at about
// 10 bytes a change, a million changes.
const DefaultFeedBacklog = 16 << 20

// ErrFeedBehind is returned by ChangeFeed.WaitCovered when changes up to a
// sequence are not stored and will not be in time.
var ErrFeedBehind = errors.New("change feed: changes not stored in SEGD_CHANGES")

// ChangeFeed publishes membership changes to SEGD_CHANGES, in order, from
// its own goroutine, and loses none: a publish that fails is retried until
// JetStream stores it, and when the backlog reaches its bound, Add waits.
// A change that is not stored when segd stops is published by the next
// start, which replays the events that caused it (see FeedResumePoint and
// WaitCovered). Stop it with Close.
type ChangeFeed struct {
	js   jetstream.JetStream
	opts ChangeFeedOptions

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the state below changes
	// queue holds the messages not yet stored, in order; the publisher
	// sends from its head.
	queue        []*feedMsg
	backlog      uint64 // changes in queue
	backlogBytes int
	maxBacklog   int // high-water mark of backlogBytes
	// stepSeq and step number the steps of one events sequence (see
	// ChangeMsgID).
	stepSeq uint64
	step    int
	stepped bool
	// cut is set once Closing's grace has passed: while publishes fail,
	// Add stops waiting and discards; discardedFrom is the lowest sequence
	// discarded (0: none), after which everything is discarded.
	cut           bool
	discardedFrom uint64
	discarded     uint64
	waitingSince  time.Time
	lastErr       string
	stopped       bool
	stop          chan struct{}
	done          chan struct{}
	graceTimer    *time.Timer

	published, messages, suppressed, failed, waits, unpublishable, overtaken atomic.Uint64

	// lock is publish's when no PublishLock is shared.
	lock FeedLock
}

// feedMsg is one encoded change message.
type feedMsg struct {
	seq     uint64
	changes int
	msg     *nats.Msg
}

func (m *feedMsg) size() int { return len(m.msg.Data) + 200 }

// FeedStats counts what a ChangeFeed did.
type FeedStats struct {
	// Published changes were stored by JetStream (duplicates included), in
	// Messages messages.
	Published, Messages uint64
	// Suppressed changes came from events an earlier run had published.
	Suppressed uint64
	// Failed counts publishes that were not acknowledged and retried.
	Failed uint64
	// Overtaken counts windows sent again at once because another host's
	// partitions stored changes first (contention, not a failure).
	Overtaken uint64
	// Backlog changes (BacklogBytes bytes) wait to be stored;
	// MaxBacklogBytes is the highest BacklogBytes reached.
	Backlog                       uint64
	BacklogBytes, MaxBacklogBytes int
	// Waits counts the times Add waited for room; WaitingSince is set while
	// it waits.
	Waits        uint64
	WaitingSince time.Time
	// Discarded changes were handed over after Closing's grace and are
	// left to the next start's replay.
	Discarded uint64
	// Unpublishable changes do not fit in one NATS message.
	Unpublishable uint64
	LastError     string
}

// StartChangeFeed starts publishing the changes given to Add.
func StartChangeFeed(js jetstream.JetStream, opts ChangeFeedOptions) *ChangeFeed {
	if opts.MaxBacklog <= 0 {
		opts.MaxBacklog = DefaultFeedBacklog
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = 64 << 10
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = int(js.Conn().MaxPayload())
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 1 << 20
	}
	opts.MaxMessage = min(opts.MaxMessage, opts.MaxPayload/2)
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 4 << 20
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &ChangeFeed{js: js, opts: opts, changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

// signalLocked wakes everyone waiting on a change of state.
func (f *ChangeFeed) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitLogEvery is how often a wait for the feed is logged.
const waitLogEvery = 30 * time.Second

// enqueue appends a message, first waiting while the backlog is at its
// bound. Once Closing's grace has passed while JetStream fails, it
// discards instead of waiting (the next start's replay publishes what was
// discarded), and so it does with every later message: the stream must
// hold a prefix of the changes for FeedResumePoint to be exact.
func (f *ChangeFeed) enqueue(m *feedMsg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var logAt time.Time
	full := func() bool { return len(f.queue) > 0 && f.backlogBytes+m.size() > f.opts.MaxBacklog }
	for full() && !f.giveUpLocked() && f.discardedFrom == 0 {
		now := time.Now()
		if f.waitingSince.IsZero() {
			f.waitingSince = now
			f.waits.Add(1)
			logAt = now.Add(waitLogEvery)
		}
		if now.After(logAt) {
			f.opts.Logger.Warn("change feed: ingest is waiting for JetStream to store changes",
				"backlog", f.backlog, "backlog_bytes", f.backlogBytes, "waiting", now.Sub(f.waitingSince).Round(time.Second),
				"last_error", f.lastErr)
			logAt = now.Add(waitLogEvery)
		}
		ch := f.changed
		f.mu.Unlock()
		t := time.NewTimer(waitLogEvery)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
		f.mu.Lock()
	}
	f.waitingSince = time.Time{}
	if f.stopped || f.discardedFrom != 0 || full() {
		if f.discardedFrom == 0 || m.seq < f.discardedFrom {
			f.discardedFrom = max(m.seq, 1)
		}
		f.discarded += uint64(m.changes)
		return
	}
	f.queue = append(f.queue, m)
	f.backlog += uint64(m.changes)
	f.backlogBytes += m.size()
	f.maxBacklog = max(f.maxBacklog, f.backlogBytes)
	f.signalLocked()
}

// Stats reports the feed's counters.
func (f *ChangeFeed) Stats() FeedStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FeedStats{Published: f.published.Load(), Messages: f.messages.Load(), Suppressed: f.suppressed.Load(),
		Failed: f.failed.Load(), Overtaken: f.overtaken.Load(), Backlog: f.backlog, BacklogBytes: f.backlogBytes, MaxBacklogBytes: f.maxBacklog,
		Waits: f.waits.Load(), WaitingSince: f.waitingSince, Discarded: f.discarded,
		Unpublishable: f.unpublishable.Load(), LastError: f.lastErr}
}

// Status reports the feed for segd.v1.status.
func (f *ChangeFeed) Status() *api.FeedStatus {
	st := f.Stats()
	out := &api.FeedStatus{Published: st.Published, Messages: st.Messages, Backlog: st.Backlog,
		BacklogBytes: uint64(st.BacklogBytes), MaxBacklogBytes: uint64(f.opts.MaxBacklog), Waits: st.Waits,
		Failed: st.Failed, LastError: st.LastError, Suppressed: st.Suppressed, Unpublishable: st.Unpublishable}
	if !st.WaitingSince.IsZero() {
		out.WaitingSince = st.WaitingSince.UTC().Format(time.RFC3339)
	}
	return out
}

// Flush waits until every change added so far is stored (or ctx ends).
func (f *ChangeFeed) Flush(ctx context.Context) error {
	return f.waitFor(ctx, func() (bool, error) { return len(f.queue) == 0, nil })
}

// WaitCovered waits until every change of sequences up to seq that was
// added is stored in SEGD_CHANGES. segd writes a snapshot at seq only then:
// a start from that snapshot does not replay those sequences, so their
// changes must be stored already. It returns ErrFeedBehind at once when
// some of them were discarded after Closing's grace (or the feed stopped
// with them unstored).
func (f *ChangeFeed) WaitCovered(ctx context.Context, seq uint64) error {
	return f.waitFor(ctx, func() (bool, error) {
		if f.discardedFrom != 0 && f.discardedFrom <= seq {
			return false, fmt.Errorf("%w: %d changes from sequence %d on are left to the next start's replay", ErrFeedBehind, f.discarded, f.discardedFrom)
		}
		if len(f.queue) == 0 || f.queue[0].seq > seq {
			return true, nil
		}
		if f.giveUpLocked() {
			return false, fmt.Errorf("%w: %d changes wait (the oldest of sequence %d; last error: %s) and segd is stopping", ErrFeedBehind, f.backlog, f.queue[0].seq, f.lastErr)
		}
		return false, nil
	})
}

// giveUpLocked reports whether waits for the feed end now: it stopped, or
// Closing's grace has passed and its last publish failed. (A feed that
// still stores changes is waited for: it empties in moments.)
func (f *ChangeFeed) giveUpLocked() bool {
	return f.stopped || f.cut && f.lastErr != ""
}

func (f *ChangeFeed) waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		f.mu.Lock()
		ok, err := cond()
		ch := f.changed
		f.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			f.mu.Lock()
			n, lastErr := f.backlog, f.lastErr
			f.mu.Unlock()
			if lastErr != "" {
				return fmt.Errorf("%w: %d changes wait (last error: %s): %w", ErrFeedBehind, n, lastErr, ctx.Err())
			}
			return fmt.Errorf("%w: %d changes wait: %w", ErrFeedBehind, n, ctx.Err())
		}
	}
}

// Closing bounds the waits ahead of a stop: after grace, if JetStream
// fails to store changes, Add no longer waits for room (it discards, and
// the next start's replay publishes what it discarded) and WaitCovered
// fails for what is not stored. Call it when segd begins to stop, so that
// neither ingest nor a snapshot waits on an unreachable JetStream past
// grace.
func (f *ChangeFeed) Closing(grace time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.graceTimer != nil || f.cut {
		return
	}
	f.graceTimer = time.AfterFunc(grace, func() {
		f.mu.Lock()
		f.cut = true
		f.signalLocked()
		f.mu.Unlock()
	})
}

// Close stores what is queued and stops. It waits at most timeout, and not
// at all once Closing's grace (timeout, if Closing was not called) has
// passed while JetStream fails. What is not stored then is logged; the next
// start publishes it.
func (f *ChangeFeed) Close(timeout time.Duration) {
	f.Closing(timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	_ = f.waitFor(ctx, func() (bool, error) { return len(f.queue) == 0 || f.giveUpLocked(), nil })
	cancel()
	f.mu.Lock()
	f.stopped = true
	if f.graceTimer != nil {
		f.graceTimer.Stop()
	}
	left, bytes := f.backlog+f.discarded, f.backlogBytes
	from := f.discardedFrom
	if len(f.queue) > 0 && (from == 0 || f.queue[0].seq < from) {
		from = f.queue[0].seq
	}
	f.signalLocked()
	f.mu.Unlock()
	close(f.stop)
	<-f.done
	if left > 0 {
		f.opts.Logger.Warn("change feed: changes not stored at shutdown; the next start replays their events and publishes them",
			"changes", left, "bytes", bytes, "from_seq", from, "last_error", f.lastErr)
	}
}

// maxWindow bounds the messages in flight, below the client's limit of
// pending asynchronous publishes (4000 by default).
const maxWindow = 1000

// run publishes the queue's head, a window of messages at a time, until
// Close.
func (f *ChangeFeed) run() {
	defer close(f.done)
	backoff := 100 * time.Millisecond
	overtakenInARow := 0
	for {
		f.mu.Lock()
		var window []*feedMsg
		bytes := 0
		for _, m := range f.queue {
			if len(window) > 0 && (bytes+m.size() > f.opts.MaxInFlight || len(window) >= maxWindow || f.opts.OtherHosts) {
				break
			}
			window = append(window, m)
			bytes += m.size()
		}
		ch := f.changed
		f.mu.Unlock()
		if len(window) == 0 {
			select {
			case <-ch:
				continue
			case <-f.stop:
				return
			}
		}
		stored, err := f.publish(window)
		select {
		case <-f.stop:
			return // what is not stored is left to the next start
		default:
		}
		f.mu.Lock()
		for _, m := range window[:stored] {
			f.backlog -= uint64(m.changes)
			f.backlogBytes -= m.size()
			f.published.Add(uint64(m.changes))
			f.messages.Add(1)
		}
		if errors.Is(err, errDuplicatesSkipped) {
			err = nil // the duplicates are stored: not a failure
		}
		retryNow := false
		if errors.Is(err, errOvertaken) {
			overtakenInARow++
			err, retryNow = nil, true
		} else {
			overtakenInARow = 0
		}
		clear(f.queue[:stored])
		f.queue = f.queue[stored:]
		if len(f.queue) == 0 {
			f.queue = nil // let the array go
		}
		if err != nil {
			f.failed.Add(1)
			f.lastErr = err.Error()
		} else {
			f.lastErr = ""
		}
		f.signalLocked()
		f.mu.Unlock()
		if retryNow {
			f.overtaken.Add(1)
			if overtakenInARow > 1 {
				pause := min(time.Duration(overtakenInARow)*time.Millisecond, overtakenPause)
				select {
				case <-time.After(rand.N(pause)):
				case <-f.stop:
					return
				}
			}
			continue
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		f.opts.Logger.Warn("change feed: JetStream did not store changes; retrying in order", "error", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-f.stop:
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// errDuplicatesSkipped ends a window at a message JetStream dropped as a
// duplicate (stored before, by a previous owner of the partition): the
// expectations of the messages after it are one off, so they are refused
// and sent again at once, not after a back-off.
var errDuplicatesSkipped = errors.New("change feed: skipped changes stored before")

// errOvertaken ends a window that another host's message overtook: the
// feeds of partitions run by other hosts publish into SEGD_CHANGES too,
// and no lock orders them with this one's, so the stream's last sequence
// this window expected had moved on. That is contention, not a failure:
// the window is sent again at once, expecting the sequence read again.
var errOvertaken = errors.New("change feed: another host stored changes first")

// overtaken reports whether JetStream refused a message because the
// stream's last sequence was not the one it expected (the code differs on
// a replicated stream).
func overtaken(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// overtakenPause is the most a window overtaken many times in a row
// waits before it is sent again: a random pause up to a millisecond per
// overtake in a row (up to this), so that hosts contending for the
// stream do not retry in lock step, and a stream whose last sequence
// could not be read right (not expected) cannot spin the publisher.
// Contention is never counted as a failure: each overtake means another
// host's changes were stored.
const overtakenPause = 50 * time.Millisecond

// publish sends the window asynchronously and waits for the
// acknowledgements in order; it returns how many messages from the start
// were stored (or dropped as duplicates: stored before), and the first
// error.
//
// Message i expects the stream's last sequence to be last+i
// (Nats-Expected-Last-Sequence), so each is stored only right after the
// one before it: should one fail, JetStream refuses the rest of the window
// rather than store them out of order, and they are sent again with the
// failed one. SEGD_CHANGES thus only grows by a prefix of the queue: in
// order, and FeedResumePoint exact. The expected last sequence is checked
// when JetStream accepts the message, on a replicated stream too; the
// expected last msg id used before is checked on a replicated stream only
// when the message is applied, where a mismatch is a critical write error
// that stops the stream on every replica
// (TestFeedSkipsDuplicatesOnReplicatedStream).
func (f *ChangeFeed) publish(window []*feedMsg) (int, error) {
	lk := f.opts.PublishLock
	if lk == nil {
		lk = &f.lock
	}
	lk.Lock()
	defer lk.Unlock()
	if !lk.known {
		ctx, cancel := context.WithTimeout(context.Background(), f.opts.AckTimeout)
		defer cancel()
		s, err := f.js.Stream(ctx, api.ChangesStream)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		lk.last, lk.known = info.State.LastSeq, true
	}
	futures := make([]jetstream.PubAckFuture, 0, len(window))
	var sendErr error
	for i, m := range window {
		// Every send is a new nats.Msg: the client may still hold an
		// earlier attempt's.
		msg := &nats.Msg{Subject: m.msg.Subject, Data: m.msg.Data, Header: make(nats.Header, len(m.msg.Header)+1)}
		for k, v := range m.msg.Header {
			msg.Header[k] = v
		}
		msg.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(lk.last+uint64(i), 10))
		fut, err := f.js.PublishMsgAsync(msg)
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, fut)
	}
	// Until every acknowledgement is in, the last sequence is not known:
	// a failure or a duplicate leaves it to be read again.
	lk.known = false
	timeout := time.NewTimer(f.opts.AckTimeout)
	defer timeout.Stop()
	for i, fut := range futures {
		select {
		case ack := <-fut.Ok():
			if ack != nil && ack.Duplicate {
				return i + 1, errDuplicatesSkipped
			}
			if ack != nil {
				lk.last = ack.Sequence
			}
		case err := <-fut.Err():
			if overtaken(err) {
				return i, fmt.Errorf("%w: %v", errOvertaken, err)
			}
			return i, err
		case <-timeout.C:
			return i, fmt.Errorf("no acknowledgement from JetStream in %s", f.opts.AckTimeout)
		case <-f.stop:
			return i, errors.New("stopped")
		}
	}
	lk.known = sendErr == nil
	return len(futures), sendErr
}

// FeedResumePointOf is FeedResumePoint for the feed of one partition
// (ChangeFeedOptions.Partition): the events sequence recorded on that
// partition's last message in SEGD_CHANGES. The partitions' messages are
// interleaved, so it reads back from the stream's end until it meets one
// of the partition's. It returns fallback when the stream holds none of
// them (new, or aged out), and recent when it met none in the messages
// stored within the last within (the Nats-Msg-Id deduplication window):
// a message of the partition older than that cannot be overtaken by its
// republished changes without JetStream dropping them, since segd
// snapshots (WaitCovered) more often than that.
func FeedResumePointOf(ctx context.Context, stream jetstream.Stream, partition string, fallback, recent uint64, within time.Duration) (uint64, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return fallback, nil
	}
	var oldest time.Time
	for seq := info.State.LastSeq; seq >= max(info.State.FirstSeq, 1); seq-- {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			return 0, err
		}
		if oldest.IsZero() {
			oldest = msg.Time.Add(-within)
		}
		if msg.Header.Get(HeaderPartition) == partition {
			es, err := strconv.ParseUint(msg.Header.Get(api.HeaderEventsSeq), 10, 64)
			if err != nil {
				return recent, nil
			}
			return es, nil
		}
		if msg.Time.Before(oldest) {
			return recent, nil
		}
	}
	return fallback, nil
}
