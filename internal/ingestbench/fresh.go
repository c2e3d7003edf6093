package ingestbench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
)

// FreshnessConfig configures RunFreshness.
type FreshnessConfig struct {
	Rules     int           // rule set (RuleSets), plus the probe segment
	Rates     []int         // background rates, events/s, measured one after the other
	Duration  time.Duration // how long each rate is produced
	BatchSize int           // events per live batch
	// Timeout bounds the wait for segd to apply what was produced, after
	// each rate (a segd that falls behind catches up meanwhile).
	Timeout time.Duration
}

// Freshness is one rate's publish-to-membership latencies.
type Freshness struct {
	Rate     int     `json:"rate"`     // asked, events/s
	Achieved float64 `json:"achieved"` // published, events/s
	Batches  int     `json:"batches"`
	// Notice is publish → the probe's change notice on segd.changes.>;
	// Check is publish → the first member.check that answers true;
	// Consumer is publish → a plain JetStream consumer of the same
	// subject receiving the batch (the baseline).
	Notice   Latency `json:"notice"`
	Check    Latency `json:"check"`
	Consumer Latency `json:"consumer"`
	// CatchUp is how long segd took, after the producer stopped, to apply
	// the last batch: how far behind it was. Applied is the rate segd
	// sustained: the events published over the time from the first
	// publish until segd had applied the last.
	CatchUp time.Duration `json:"catch_up_ns"`
	Applied float64       `json:"applied"`
}

// Latency summarizes latency samples.
type Latency struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration { return d[int(p*float64(len(d)-1))] }
	return Latency{N: len(d), P50: at(0.50), P99: at(0.99), Max: d[len(d)-1]}
}

// RunFreshness starts segd on the pre-published stream, waits until it has
// caught up, then, for each rate, publishes live batches to LiveSubject at
// that rate for cfg.Duration, each carrying one probe event of a new user
// that enters ProbeSegment, and measures how soon the change is announced
// and member.check sees it, beside a plain consumer of the same subject.
func (e *Env) RunFreshness(ctx context.Context, segd Segd, g *Generator, dir string, cfg FreshnessConfig) ([]Freshness, error) {
	rulesFile, err := WriteRules(dir, cfg.Rules, true)
	if err != nil {
		return nil, err
	}
	if err := e.Reset(ctx); err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp(dir, "segd-data-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	proc, err := segd.Start(ctx, SegdOptions{NATSURL: e.URL, DataDir: dataDir, RulesFile: rulesFile})
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = proc.Stop()
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	_, err = e.waitApplied(wctx, proc, e.Published.LastSeq)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("catching up before the freshness run: %w", err)
	}
	var out []Freshness
	for _, rate := range cfg.Rates {
		f, err := e.freshnessAt(ctx, proc, g, rate, cfg)
		if err != nil {
			return out, fmt.Errorf("at %d events/s: %w", rate, err)
		}
		out = append(out, f)
	}
	stopped = true
	_, err = proc.Stop()
	return out, err
}

// stamp is when something about batch seq happened.
type stamp struct {
	seq uint64
	at  time.Time
}

// stamps collects stamps from several goroutines.
type stamps struct {
	mu sync.Mutex
	s  []stamp
}

func (s *stamps) add(seq uint64, at time.Time) {
	s.mu.Lock()
	s.s = append(s.s, stamp{seq, at})
	s.mu.Unlock()
}

func (s *stamps) all() []stamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.s)
}

// entries are when users entered the probe segment, by user.
type entries struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (e *entries) add(user string, at time.Time) {
	e.mu.Lock()
	if _, ok := e.at[user]; !ok {
		e.at[user] = at
	}
	e.mu.Unlock()
}

func (e *entries) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.at)
}

func (e *entries) all() map[string]time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.at)
}

func (e *Env) freshnessAt(ctx context.Context, proc SegdProc, g *Generator, rate int, cfg FreshnessConfig) (Freshness, error) {
	res := Freshness{Rate: rate}
	received := &stamps{}
	entered := &entries{at: map[string]time.Time{}}
	noticeConn, err := e.Connect("segd-bench-notices")
	if err != nil {
		return res, err
	}
	defer noticeConn.Close()
	// Probes are matched by user, not by the Segd-Events-Seq header: an
	// engine that applies several messages in one step announces their
	// changes together, under the last one's sequence.
	sub, err := noticeConn.Subscribe(api.ChangesSubjectPrefix+ProbeSegment, func(m *nats.Msg) {
		at := time.Now()
		var cb api.ChangeBatch
		if json.Unmarshal(m.Data, &cb) == nil {
			for _, u := range cb.Enter {
				entered.add(u, at)
			}
		}
	})
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()
	if err := noticeConn.Flush(); err != nil {
		return res, err
	}
	// The baseline: a plain (ordered) JetStream consumer of the live subject.
	consumerConn, err := e.Connect("segd-bench-consumer")
	if err != nil {
		return res, err
	}
	defer consumerConn.Close()
	cjs, err := jetstream.New(consumerConn)
	if err != nil {
		return res, err
	}
	oc, err := cjs.OrderedConsumer(ctx, bus.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{LiveSubject}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return res, err
	}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		at := time.Now()
		if md, err := m.Metadata(); err == nil {
			received.add(md.Sequence.Stream, at)
		}
	})
	if err != nil {
		return res, err
	}
	defer cc.Stop()
	checkConn, err := e.Connect("segd-bench-checks")
	if err != nil {
		return res, err
	}
	defer checkConn.Close()

	interval := time.Duration(float64(time.Second) * float64(cfg.BatchSize) / float64(rate))
	batchesPerSec := max(1, int(time.Second/interval))
	checkEvery := max(1, batchesPerSec/10) // about ten member.check probes a second
	type sent struct {
		at  time.Time
		ack jetstream.PubAckFuture
	}
	var batches []sent
	var checks []time.Duration
	var checksMu sync.Mutex
	var pollers sync.WaitGroup
	var buf []byte
	probes := map[string]time.Time{}
	start := time.Now()
	for k := 0; ; k++ {
		due := start.Add(time.Duration(k) * interval)
		if due.Sub(start) >= cfg.Duration {
			break
		}
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		user := fmt.Sprintf("probe-%d-%d", rate, k)
		now := time.Now()
		probe := `{"user":"` + user + `","event":"bench_probe","time":` + strconv.FormatInt(now.UnixMilli(), 10) + `}`
		buf = g.LiveBatch(buf[:0], cfg.BatchSize, now.UnixMilli(), probe)
		f, err := e.js.PublishAsync(LiveSubject, buf, stallWait)
		if err != nil {
			return res, err
		}
		batches = append(batches, sent{now, f})
		probes[user] = now
		if k%checkEvery == 0 {
			pollers.Go(func() {
				if d, ok := pollMember(ctx, checkConn, user, now, cfg.Timeout); ok {
					checksMu.Lock()
					checks = append(checks, d)
					checksMu.Unlock()
				}
			})
		}
	}
	// The schedule's span, or longer if publishing fell behind it.
	elapsed := max(time.Since(start), time.Duration(len(batches))*interval)
	res.Batches = len(batches)
	res.Achieved = float64(len(batches)*cfg.BatchSize) / elapsed.Seconds()
	pubAt := make(map[uint64]time.Time, len(batches))
	var last uint64
	for _, b := range batches {
		select {
		case ack := <-b.ack.Ok():
			pubAt[ack.Sequence] = b.at
			last = max(last, ack.Sequence)
		case err := <-b.ack.Err():
			return res, fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	stopped := time.Now()
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	_, err = e.waitApplied(wctx, proc, last)
	cancel()
	if err != nil {
		return res, err
	}
	res.CatchUp = time.Since(stopped)
	res.Applied = float64(len(batches)*cfg.BatchSize) / (elapsed + res.CatchUp).Seconds()
	pollers.Wait()
	// The last notices and deliveries may still be on their way: wait
	// until each batch has both, or half a minute (a loaded machine).
	for deadline := time.Now().Add(min(cfg.Timeout, 30*time.Second)); time.Now().Before(deadline); {
		if entered.len() >= len(batches) && len(received.all()) >= len(batches) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	lat := func(s []stamp) []time.Duration {
		seen := map[uint64]bool{}
		var d []time.Duration
		for _, st := range s {
			if t, ok := pubAt[st.seq]; ok && !seen[st.seq] {
				seen[st.seq] = true
				d = append(d, st.at.Sub(t))
			}
		}
		return d
	}
	var notices []time.Duration
	for user, at := range entered.all() {
		if t, ok := probes[user]; ok {
			notices = append(notices, at.Sub(t))
		}
	}
	res.Notice = summarize(notices)
	res.Consumer = summarize(lat(received.all()))
	res.Check = summarize(checks)
	return res, nil
}

// pollMember asks member.check about user's probe segment until it says
// true, and returns how long after since that was. It polls every
// millisecond for the first 100 ms, then every 10 ms to a second, then
// every 50 ms: a resolution of about 5% of the latency, without flooding
// a segd that is behind.
func pollMember(ctx context.Context, nc *nats.Conn, user string, since time.Time, timeout time.Duration) (time.Duration, bool) {
	body, _ := json.Marshal(api.MemberCheckRequest{User: user, Segment: ProbeSegment})
	for {
		msg, err := nc.Request(api.SubjectMemberCheck, body, 5*time.Second)
		at := time.Now()
		if err == nil {
			var r api.MemberCheckReply
			if json.Unmarshal(msg.Data, &r) == nil && r.Member {
				return at.Sub(since), true
			}
		}
		waited := at.Sub(since)
		if waited > timeout || ctx.Err() != nil {
			return 0, false
		}
		pause := time.Millisecond
		switch {
		case waited > time.Second:
			pause = 50 * time.Millisecond
		case waited > 100*time.Millisecond:
			pause = 10 * time.Millisecond
		}
		time.Sleep(pause)
	}
}
