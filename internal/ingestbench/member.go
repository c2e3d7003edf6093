package ingestbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// EchoSubject is the bare micro echo service's endpoint: the floor a
// member request is compared with, on the same server in the same run.
const EchoSubject = "bench.echo"

// echoReply is about the size of a member.check reply.
var echoReply = []byte(`{"member":true,"since":"2026-12-07T00:00:00Z","state":"exact","revision":1}`)

// MemberConfig configures NewMemberBench.
type MemberConfig struct {
	// Stream is the stream loaded before measuring (default 200k users,
	// four events each).
	Stream StreamConfig
	// Rules is the rule set (default 100 segments).
	Rules int
	Segd  Segd
	// Dir holds the embedded server's store and segd's data dir (default
	// a temporary directory, removed by Close).
	Dir     string
	NATSURL string
	// Timeout bounds loading (default 10 minutes).
	Timeout time.Duration
	// IngestRate is the background producer's rate, events/s, while
	// measuring during ingest (default 20000).
	IngestRate int
	// MaxClients is the most clients Measure is asked for (default 16).
	MaxClients int
}

// MemberBench is a segd with the stream loaded, a bare micro echo service
// beside it, and client connections to measure them with.
type MemberBench struct {
	cfg  MemberConfig
	env  *Env
	proc SegdProc
	// echoStop stops the echo service, wherever it runs.
	echoStop func() error
	// echoApart says the echo runs in a child process, as segd does.
	echoApart bool
	conns     []*nats.Conn
	segments  []string
	users     int
	gen       *Generator
	rmDir     bool
	// Loaded is how long segd took to catch up on the stream.
	Loaded time.Duration
}

// NewMemberBench publishes the stream, starts segd on it and waits until
// segd has applied it, and starts the echo service on the same server.
func NewMemberBench(ctx context.Context, cfg MemberConfig) (_ *MemberBench, err error) {
	if cfg.Rules <= 0 {
		cfg.Rules = 100
	}
	if cfg.Stream.Users <= 0 {
		cfg.Stream.Users = 200000
	}
	if cfg.Stream.Events <= 0 {
		cfg.Stream.Events = 4 * cfg.Stream.Users
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.IngestRate <= 0 {
		cfg.IngestRate = 20000
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 16
	}
	if cfg.Segd == nil {
		cfg.Segd = InProcess{}
	}
	m := &MemberBench{cfg: cfg, segments: SegmentIDs(cfg.Rules)}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "segd-bench-member-"); err != nil {
			return nil, err
		}
		m.cfg.Dir, m.rmDir = cfg.Dir, true
	}
	if m.env, err = NewEnv(ctx, cfg.NATSURL, cfg.Dir); err != nil {
		return nil, err
	}
	m.gen = NewGenerator(cfg.Stream)
	m.users = m.gen.Config().Users
	if _, err = m.env.Publish(ctx, m.gen); err != nil {
		return nil, err
	}
	rulesFile, err := WriteRules(cfg.Dir, cfg.Rules, false)
	if err != nil {
		return nil, err
	}
	if err := m.env.Reset(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if m.proc, err = cfg.Segd.Start(ctx, SegdOptions{NATSURL: m.env.URL, DataDir: cfg.Dir + "/segd-data", RulesFile: rulesFile}); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	_, err = m.env.waitApplied(wctx, m.proc, m.env.Published.LastSeq)
	cancel()
	if err != nil {
		return nil, err
	}
	m.Loaded = time.Since(t0)
	if m.echoStop, m.echoApart, err = startEcho(ctx, cfg.Segd, m.env.URL); err != nil {
		return nil, err
	}
	for range cfg.MaxClients {
		nc, err := m.env.Connect("segd-bench-client")
		if err != nil {
			return nil, err
		}
		m.conns = append(m.conns, nc)
	}
	return m, nil
}

// startEcho starts the echo service where segd runs: in a child process
// of its own when segd is one (an EchoStarter), else in this process
// beside segd. A request served by another process pays for two more
// context switches than one served here, so the echo must pay them too.
func startEcho(ctx context.Context, s Segd, url string) (stop func() error, apart bool, err error) {
	if es, ok := s.(EchoStarter); ok {
		stop, err = es.StartEcho(ctx, url)
		return stop, true, err
	}
	nc, err := ConnectEcho(url)
	if err != nil {
		return nil, false, err
	}
	svc, err := ServeEcho(nc)
	if err != nil {
		nc.Close()
		return nil, false, err
	}
	return func() error {
		err := svc.Stop()
		nc.Close()
		return err
	}, false, nil
}

// EchoApart says whether the echo runs in a child process of its own.
func (m *MemberBench) EchoApart() bool { return m.echoApart }

// Proc is the segd being measured.
func (m *MemberBench) Proc() SegdProc { return m.proc }

// Users and Segments describe what is loaded.
func (m *MemberBench) Users() int { return m.users }

// Segments are the segment ids loaded.
func (m *MemberBench) Segments() []string { return m.segments }

// Close stops segd, the echo service and the server.
func (m *MemberBench) Close() error {
	var err error
	for _, nc := range m.conns {
		nc.Close()
	}
	if m.echoStop != nil {
		if eerr := m.echoStop(); eerr != nil {
			err = fmt.Errorf("echo: %w", eerr)
		}
	}
	if m.proc != nil {
		if _, perr := m.proc.Stop(); perr != nil {
			err = perr
		}
	}
	if m.env != nil {
		m.env.Close()
	}
	if m.rmDir {
		os.RemoveAll(m.cfg.Dir)
	}
	return err
}

// Request is one kind of request measured.
type Request int

// The requests Measure sends.
const (
	Echo Request = iota
	MemberCheck
	MemberSegments
)

// String is the request's endpoint name.
func (r Request) String() string {
	return [...]string{"echo", "member.check", "member.segments"}[r]
}

// body is the i-th request of kind r: users and segments round-robin.
func (m *MemberBench) body(r Request, i int) []byte {
	user := UserID(i % m.users)
	switch r {
	case MemberSegments:
		b, _ := json.Marshal(api.MemberSegmentsRequest{User: user})
		return b
	default:
		b, _ := json.Marshal(api.MemberCheckRequest{User: user, Segment: m.segments[i%len(m.segments)]})
		return b
	}
}

func (r Request) subject() string {
	return [...]string{EchoSubject, api.SubjectMemberCheck, api.SubjectMemberSegments}[r]
}

// Stats are one measurement's latencies and throughput.
type Stats struct {
	Requests int     `json:"requests"`
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	Rate     float64 `json:"req_per_s"`
}

// Measure sends n requests of kind r from `clients` connections, one at a
// time each, and returns the latency percentiles and the throughput. A
// reply that is an error, or not the expected JSON, fails it.
func (m *MemberBench) Measure(r Request, clients, n int) (Stats, error) {
	if clients > len(m.conns) {
		return Stats{}, fmt.Errorf("%d clients: at most %d", clients, len(m.conns))
	}
	bodies := make([][]byte, min(n, 4096))
	for i := range bodies {
		bodies[i] = m.body(r, i)
	}
	want := []byte(`{"member":`)
	if r == MemberSegments {
		want = []byte(`{"segments":`)
	}
	lat := make([][]time.Duration, clients)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		nc := m.conns[c]
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				msg, err := nc.Request(r.subject(), bodies[int(i)%len(bodies)], 10*time.Second)
				lat[c] = append(lat[c], time.Since(t0))
				if err == nil && (msg.Header.Get(micro.ErrorCodeHeader) != "" || !bytes.HasPrefix(msg.Data, want)) {
					err = fmt.Errorf("%s reply %s %v", r, msg.Data, msg.Header)
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if p := failed.Load(); p != nil {
		return Stats{}, *p
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	us := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / 1e3 }
	return Stats{Requests: len(all), P50: us(0.5), P99: us(0.99), Rate: float64(len(all)) / elapsed.Seconds()}, nil
}

// Ingest publishes live batches at the configured rate until the returned
// stop is called; stop returns how many events were published and the
// first publish error.
func (m *MemberBench) Ingest(ctx context.Context) (stop func() (int, error)) {
	ctx, cancel := context.WithCancel(ctx)
	batch := m.gen.Config().BatchSize
	interval := time.Duration(float64(time.Second) * float64(batch) / float64(m.cfg.IngestRate))
	var (
		events int
		err    error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		var buf []byte
		start := time.Now()
		for k := 0; ; k++ {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(k) * interval))):
			case <-ctx.Done():
				return
			}
			buf = m.gen.LiveBatch(buf[:0], batch, time.Now().UnixMilli(), "")
			if _, perr := m.env.js.PublishAsync(LiveSubject, buf, stallWait); perr != nil {
				err = perr
				return
			}
			events += batch
		}
	}()
	return func() (int, error) {
		cancel()
		<-done
		return events, err
	}
}
