package host

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/reference"
	"github.com/segd/segd/rules"
)

// crashRules have windows far wider than the test's events spread, so
// that the wall clock, which a separate process cannot share with the
// test, moves no membership while the test runs.
const crashRules = `
segments:
  - id: buyers
    did: {event: checkout, count: ">= 2", last: 30d}
  - id: big_spenders
    did: {event: pay, aggregate: sum(amount), is: ">= 150", last: 30d}
  - id: searchers
    did: {event: search, aggregate: distinct(term), is: ">= 2", last: 30d}
  - id: non_payers
    did_not: {event: pay, last: 30d}
  - id: converted
    sequence: {steps: [{event: checkout}, {event: pay}], within: 48h, last: 30d}
  - id: adults
    profile: age >= 18
  - id: adult_buyers
    all: [{in_segment: adults}, {in_segment: buyers}]
`

// crashBatch is one message of the crash test's stream.
type crashBatch struct {
	id    string
	items []api.Item
	junk  bool // not a batch: for the dead-letter stream
	batch rules.Batch
}

func crashStream(rng *rand.Rand, n int, now time.Time) []crashBatch {
	names := []string{"checkout", "pay", "search", "page_view"}
	terms := []string{"shoes", "hats", "bags", "socks"}
	out := make([]crashBatch, n)
	for i := range out {
		b := &out[i]
		b.id = fmt.Sprintf("crash-%d", i)
		if rng.IntN(40) == 0 {
			b.junk = true
			continue
		}
		for range rng.IntN(40) + 1 {
			u := rng.IntN(300)
			user := fmt.Sprintf("user-%d", u)
			if rng.IntN(6) == 0 {
				attrs := map[string]any{"age": float64(12 + rng.IntN(20))}
				b.items = append(b.items, api.Item{User: user, Profile: attrs})
				b.batch.Profiles = append(b.batch.Profiles, rules.ProfileUpdate{User: user, Attrs: attrs})
				continue
			}
			at := now.Add(-time.Duration(rng.IntN(5*24*60)+60) * time.Minute).Truncate(time.Millisecond)
			ev := rules.Event{User: user, Name: names[rng.IntN(len(names))], Time: at.UnixMilli()}
			if ev.Name == "pay" && u%4 == 0 {
				ev.Name = "page_view" // a quarter of the users never pay
			}
			switch ev.Name {
			case "pay":
				ev.Props = map[string]any{"amount": float64(rng.IntN(100))}
			case "search":
				ev.Props = map[string]any{"term": terms[rng.IntN(len(terms))]}
			}
			b.items = append(b.items, api.Item{User: user, Event: ev.Name, Time: at.UnixMilli(), Props: ev.Props})
			b.batch.Events = append(b.batch.Events, ev)
		}
	}
	return out
}

// segdProcess is `segd serve` running as a separate process.
type segdProcess struct {
	cmd *exec.Cmd
	url string
	log string // the file of its output
}

func (p *segdProcess) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *segdProcess) wait() error { return p.cmd.Wait() }

// TestCrashRecovery is the crash test of docs/operations.md: segd runs as
// a separate process with a snapshot every 10ms; the test publishes a
// randomized stream (with Nats-Msg-Id) and kills segd with SIGKILL at
// random moments: while batches arrive, while it loads and replays, while
// it writes snapshots. After each kill it starts segd again on the same
// data dir. In the end, segment membership, sizes and counters must be
// exactly the reference evaluation of the whole stream; a SIGTERM then
// stops segd with exit status 0 after a final snapshot, which the next
// start loads without replaying anything.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs segd as a process")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEGD_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (SEGD_CRASH_SEED=%d reproduces the schedule)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 11))

	dir := t.TempDir()
	bin := filepath.Join(dir, "segd")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build segd")
	}
	build := exec.Command(gobin, "build", "-o", bin, "github.com/segd/segd/cmd/segd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(crashRules), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	port := freePort(t)
	runs := 0
	start := func() *segdProcess {
		t.Helper()
		runs++
		p := &segdProcess{url: fmt.Sprintf("nats://127.0.0.1:%d", port), log: filepath.Join(dir, fmt.Sprintf("segd-%d.log", runs))}
		out, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		p.cmd = exec.Command(bin, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dataDir,
			"--rules", rulesFile, "--snapshot-interval", "10ms", "--log-level", "warn")
		p.cmd.Stdout, p.cmd.Stderr = out, out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return p
	}

	now := time.Now()
	stream := crashStream(rng, 400, now)
	next := 0 // the first batch not yet acked by JetStream
	kills, tempsLeft := 0, 0
	for round := 0; round < 9; round++ {
		p := start()
		var killAfter time.Duration
		switch round % 3 {
		case 2:
			killAfter = time.Duration(rng.IntN(150)) * time.Millisecond // while it loads and replays
		case 1:
			killAfter = time.Duration(30+rng.IntN(100)) * time.Millisecond // then at the next snapshot write
		default:
			killAfter = time.Duration(100+rng.IntN(400)) * time.Millisecond
		}
		done, gone := make(chan int), make(chan struct{})
		go func(from, to int) {
			done <- publishUntilGone(p.url, stream, from, to, gone)
		}(next, next+30+rng.IntN(80))
		began := time.Now()
		time.Sleep(killAfter) // the chaos schedule, not synchronization
		if round%3 == 1 {
			// Kill as soon as a snapshot is being written.
			for time.Since(began) < 3*time.Second {
				if temps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", ".tmp-*")); len(temps) > 0 {
					break
				}
			}
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.wait()
		close(gone)
		next = <-done
		kills++
		temps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", ".tmp-*"))
		if len(temps) > 0 {
			tempsLeft++
		}
		t.Logf("round %d: killed after %v; %d batches acked so far; %d half-written snapshots left", round,
			time.Since(began).Round(time.Millisecond), next, len(temps))
	}

	// The last run: publish the rest, wait until segd has applied it all.
	p := start()
	defer func() {
		if t.Failed() {
			t.Logf("segd log:\n%s", p.output())
		}
		_ = p.cmd.Process.Kill()
	}()
	if got := publishUntilGone(p.url, stream, next, len(stream), nil); got != len(stream) {
		t.Fatalf("could not publish batches %d..%d to a running segd", got, len(stream))
	}
	nc, c := connectWhenUp(t, p.url)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st := waitCaughtUp(t, js, c)

	segs, err := rules.Compile([]rules.File{{Name: "crash.yaml", Data: []byte(crashRules)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.New(segs, time.UTC, engine.DefaultMaxFutureSkew, rules.DefaultMaxWindowDays)
	var events, junk uint64
	for _, b := range stream {
		if b.junk {
			junk++
			continue
		}
		ref.Apply(b.batch, time.Now())
		events += uint64(len(b.batch.Events))
	}
	if st.Events != events || st.NotBatches != junk {
		t.Fatalf("after %d kills: events %d, not batches %d; the stream has %d events and %d junk messages (each counted once)",
			kills, st.Events, st.NotBatches, events, junk)
	}
	checkAgainstReference(t, c, ref, segs)
	t.Logf("%d kills, %d of them left a half-written snapshot; %d events, %d users: exact (%v)", kills, tempsLeft, events, st.Users,
		time.Since(now).Round(time.Millisecond))

	// SIGTERM: stop consuming, snapshot, exit 0; the next start replays
	// nothing.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
		t.Fatalf("segd after SIGTERM: %v\n%s", err, p.output())
	}
	nc.Close()
	p = start()
	nc, c = connectWhenUp(t, p.url)
	defer nc.Close()
	js, _ = jetstream.New(nc)
	st2 := waitCaughtUp(t, js, c)
	if st2.Snapshot == nil || st2.Snapshot.LoadedSeq != st.LastSeq || st2.ReplayFrom != st.LastSeq+1 {
		t.Fatalf("after SIGTERM and a restart: %+v, snapshot %+v; want the snapshot at %d loaded", st2, st2.Snapshot, st.LastSeq)
	}
	checkAgainstReference(t, c, ref, segs)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("segd after SIGTERM: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// publishUntilGone publishes stream[from:to] in order, retrying each batch
// (same Nats-Msg-Id) until segd's NATS server is reachable, and gives up
// once it is gone after having been reached. It returns the index of the
// first batch not acked.
func publishUntilGone(url string, stream []crashBatch, from, to int, gone <-chan struct{}) int {
	return publishUntilGoneParts(url, stream, from, to, gone, 1)
}

// publishUntilGoneParts is publishUntilGone with batch i published
// partition-aware (client.PublishPartitioned) when i is even and
// partitions > 1, and mixed otherwise: both producers' paths feed the
// partitions.
func publishUntilGoneParts(url string, stream []crashBatch, from, to int, gone <-chan struct{}, partitions int) int {
	to = min(to, len(stream))
	var nc *nats.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if nc, err = nats.Connect(url, nats.MaxReconnects(0)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return from
		}
		select {
		case <-gone:
			return from
		case <-time.After(5 * time.Millisecond): // waiting for the process to listen
		}
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for i := from; i < to; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		if b := stream[i]; b.junk {
			_, err = js.Publish(ctx, "segd.events.junk", []byte("hello, not a batch"), jetstream.WithMsgID(b.id))
		} else if partitions > 1 && i%2 == 0 {
			_, err = client.PublishPartitioned(ctx, js, fmt.Sprintf("segd.events.%d", i%4), b.items, b.id, partitions)
		} else {
			_, err = client.PublishBatch(ctx, js, fmt.Sprintf("segd.events.%d", i%4), b.items, b.id)
		}
		cancel()
		if err != nil {
			if nc.IsClosed() || !nc.IsConnected() {
				return i
			}
			i-- // e.g. the stream is not created yet: try again
			select {
			case <-gone:
				return i + 1
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return to
}

func connectWhenUp(t *testing.T, url string) (*nats.Conn, *client.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(url)
		if err == nil {
			return nc, client.New(nc)
		}
		if time.Now().After(deadline) {
			t.Fatalf("segd did not come up: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // waiting for the process to listen
	}
}

// waitCaughtUp waits until segd reports ready at the stream's last
// sequence.
func waitCaughtUp(t *testing.T, js jetstream.JetStream, c *client.Client) *api.StatusReply {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var last uint64
		if s, err := js.Stream(context.Background(), bus.EventsStream); err == nil {
			last = s.CachedInfo().State.LastSeq
		}
		st, err := c.Status(context.Background())
		if err == nil && st.Ready && last > 0 && st.LastSeq == last {
			return st
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(st)
			t.Fatalf("segd did not catch up with sequence %d: %s %v", last, b, err)
		}
		time.Sleep(10 * time.Millisecond) // polling the status endpoint
	}
}

func checkAgainstReference(t *testing.T, c *client.Client, ref *reference.Evaluator, segs []*rules.Segment) {
	t.Helper()
	ctx := context.Background()
	list, err := c.Segments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, s := range segs {
		want := ref.Members(s.ID, now)
		var got []string
		if err := c.EachMember(ctx, s.ID, 1000, func(us []string) error { got = append(got, us...); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || list[i].ID != s.ID || list[i].Size != uint64(len(want)) {
			t.Fatalf("segment %s: size %d, %d members %v\nreference %d: %v", s.ID, list[i].Size, len(got), got, len(want), want)
		}
		if len(want) == 0 {
			t.Fatalf("segment %s is empty: the stream does not exercise it", s.ID)
		}
	}
}
