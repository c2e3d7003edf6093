package host

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/bus/cluster"
)

// BenchmarkTakeover1MUsers measures a takeover with a million users of
// state: segd hosts h1 and h2 as processes (--host-id, --lease 2s, the
// crash test's 7 rules) on one JetStream server; h1 ingests 2M events of
// 1M users (two each, over 5 days), snapshots into the Object Store and
// applies a tail of 20k more events; h2 stands by. h1 is killed with
// SIGKILL; the takeover ends when status is answered ready by h2 and a
// member.check of a user from the tail is answered. Each iteration kills
// the owner of the last one and starts the killed host again as the
// standby.
//
// Figures: takeover-ms and lease-x (takeover over the lease), and, from
// the new owner's log, the phases after the kill: gained-ms (the lease
// expiring and taken), download-ms (the snapshot copied from the Object
// Store), load-ms (read into the engine), replay-ms (the log after it,
// until ready).
//
// It runs only when -bench names it (setting up takes minutes):
//
//	go test -run '^$' -bench Takeover1MUsers -benchtime 1x ./host/
func BenchmarkTakeover1MUsers(b *testing.B) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), "Takeover1MUsers") {
		b.Skip("runs only when -bench names Takeover1MUsers (setting up takes minutes)")
	}
	const users, perUser, batch, tail = 1_000_000, 2, 1000, 20_000
	lease := 2 * time.Second
	dir := b.TempDir()
	bin := buildSegdWith(b, dir, false)
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(crashRules), 0o644); err != nil {
		b.Fatal(err)
	}
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: filepath.Join(dir, "nats"), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	url := ns.ClientURL()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c := client.New(nc)

	fleet := newSegdFleet(b, bin, dir)
	start := func(id string) *segdProcess {
		return fleet.start(id, "--nats", url, "--host-id", id, "--lease", lease.String(),
			"--data-dir", filepath.Join(dir, "data-"+id), "--rules", rulesFile, "--snapshot-interval", "2s")
	}

	// The state: 2M events of 1M users, published before h1 starts.
	began := time.Now()
	now := time.Now()
	names := []string{"page_view", "checkout", "pay"}
	pub := func(from, to int) {
		var items []api.Item
		flush := func() {
			if len(items) == 0 {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := client.PublishBatch(ctx, js, "segd.events.bench", items, fmt.Sprintf("bench-%d-%d", from, len(items))); err != nil {
				b.Fatal(err)
			}
			items = items[:0]
		}
		for i := from; i < to; i++ {
			u := i % users
			at := now.Add(-time.Duration(i%(5*24*60)+60) * time.Minute).UnixMilli()
			it := api.Item{User: fmt.Sprintf("user-%07d", u), Event: names[i%3], Time: at}
			if it.Event == "pay" {
				it.Props = map[string]any{"amount": float64(i % 100)}
			}
			items = append(items, it)
			if len(items) == batch {
				flush()
				from = i + 1
			}
		}
		flush()
	}
	h1 := start("h1")
	waitOwner(b, c, "h1", 2*time.Minute)
	pub(0, users*perUser)
	st := waitCaughtUpB(b, js, c, 10*time.Minute)
	waitObjectSnapshotAt(b, js, "h1", st.LastSeq)
	pub(users*perUser, users*perUser+tail)
	st = waitCaughtUpB(b, js, c, time.Minute)
	b.Logf("state ready in %v: %d events applied by h1, last seq %d", time.Since(began).Round(time.Second), st.Events, st.LastSeq)
	standby := start("h2")
	waitProcLog(b, standby, "standby: another host owns the stream", time.Minute)

	owner, ownerID, standbyID := h1, "h1", "h2"
	probe := fmt.Sprintf("user-%07d", (users*perUser+tail-1)%users)
	var total, gained, download, load, replay time.Duration
	var snapBytes int64
	tailed := 0 // events published after the first takeover
	b.ResetTimer()
	for range b.N {
		killed := time.Now()
		if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		_ = owner.wait()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.Status(ctx)
			if err == nil && st.Ready && st.Host == standbyID {
				_, err = c.MemberCheck(ctx, probe, "non_payers")
				if err == nil {
					cancel()
					break
				}
			}
			cancel()
			if time.Since(killed) > 5*time.Minute {
				b.Fatalf("%s did not take over within 5 minutes: %+v %v", standbyID, st, err)
			}
			time.Sleep(5 * time.Millisecond) // polling status and member.check
		}
		took := time.Since(killed)
		total += took
		ph := logTimes(b, standby.log)
		gained += ph["partition gained"].Sub(killed)
		download += ph["snapshot copied from the Object Store"].Sub(ph["partition gained"])
		load += ph["snapshot loaded"].Sub(ph["snapshot copied from the Object Store"])
		replay += ph["segd is ready: caught up with the event log"].Sub(ph["snapshot loaded"])
		if m := snapshotBytesRE.FindStringSubmatch(standby.output()); m != nil {
			fmt.Sscan(m[1], &snapBytes)
		}
		b.Logf("takeover %v (lease %v, snapshot %d bytes): gained %v, download %v, load %v, replay to ready %v",
			took.Round(time.Millisecond), lease, snapBytes, ph["partition gained"].Sub(killed).Round(time.Millisecond),
			ph["snapshot copied from the Object Store"].Sub(ph["partition gained"]).Round(time.Millisecond),
			ph["snapshot loaded"].Sub(ph["snapshot copied from the Object Store"]).Round(time.Millisecond),
			ph["segd is ready: caught up with the event log"].Sub(ph["snapshot loaded"]).Round(time.Millisecond))

		// The killed host comes back as the standby; the new owner's
		// snapshot is in the Object Store before the next kill.
		b.StopTimer()
		owner, ownerID, standbyID = standby, standbyID, ownerID
		standby = start(standbyID)
		waitProcLog(b, standby, "standby: another host owns the stream", time.Minute)
		// Snapshots are taken while events arrive: a few more.
		tailed += batch
		pub(users*perUser+tail+tailed-batch, users*perUser+tail+tailed)
		st := waitCaughtUpB(b, js, c, time.Minute)
		waitObjectSnapshotAt(b, js, ownerID, st.LastSeq)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(total.Milliseconds())/n, "takeover-ms")
	b.ReportMetric(total.Seconds()/n/lease.Seconds(), "lease-x")
	b.ReportMetric(float64(gained.Milliseconds())/n, "gained-ms")
	b.ReportMetric(float64(download.Milliseconds())/n, "download-ms")
	b.ReportMetric(float64(load.Milliseconds())/n, "load-ms")
	b.ReportMetric(float64(replay.Milliseconds())/n, "replay-ms")
	b.ReportMetric(float64(snapBytes)/1e6, "snapshot-MB")
	b.ReportMetric(0, "ns/op")
}

// snapshotBytesRE finds the size of the snapshot a takeover copied.
var snapshotBytesRE = regexp.MustCompile(`msg="snapshot copied from the Object Store".* bytes=(\d+)`)

// logTimeRE finds a slog text line's time and message.
var logTimeRE = regexp.MustCompile(`^time=(\S+) level=\S+ msg="([^"]*)"`)

// logTimes returns the time of the first line of each message in a segd
// log (the first partition's, for per-partition lines).
func logTimes(b *testing.B, path string) map[string]time.Time {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := logTimeRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if _, seen := out[m[2]]; seen {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			out[m[2]] = t
		}
	}
	return out
}

// waitCaughtUpB waits until status reports ready at the events stream's
// last sequence.
func waitCaughtUpB(b *testing.B, js jetstream.JetStream, c *client.Client, within time.Duration) *api.StatusReply {
	deadline := time.Now().Add(within)
	for {
		var last uint64
		if s, err := js.Stream(context.Background(), bus.EventsStream); err == nil {
			if info, err := s.Info(context.Background()); err == nil {
				last = info.State.LastSeq
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil && st.Ready && last > 0 && st.LastSeq == last {
			return st
		}
		if time.Now().After(deadline) {
			out, _ := json.Marshal(st)
			b.Fatalf("not caught up with sequence %d within %v: %s %v", last, within, out, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the status endpoint
	}
}

// waitObjectSnapshotAt waits until the Object Store holds host's
// snapshot at seq or later.
func waitObjectSnapshotAt(b *testing.B, js jetstream.JetStream, host string, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := cluster.OpenSnapshots(ctx, js, cluster.SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for {
		info, err := store.Newest(ctx, 0, 1)
		if err == nil && info.Host == host && info.Seq >= seq {
			return
		}
		if ctx.Err() != nil {
			b.Fatalf("no snapshot of %s at %d in the Object Store: %+v %v", host, seq, info, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the bucket
	}
}
