package host

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	"github.com/segd/segd/ingest"
)

// BenchmarkTakeover1MUsers measures a takeover with a million users of
// state, in two arrangements: segd hosts h1 and h2 as processes
// (--host-id, --lease 2s, the crash test's 7 rules) on one JetStream
// server; h1 ingests 2M events of 1M users (two each, over 5 days),
// snapshots every partition into the Object Store and applies a tail of
// 20k more events.
//
//   - P=1: h2 stands by. h1 is killed with SIGKILL; the takeover ends
//     when status is answered ready by h2 and a member.check of a user
//     from the tail is answered.
//   - shared-P=4: h2 joins and takes its share (2 of 4 partitions, handed
//     over with a snapshot each, snapshotted again by h2 after 1k more
//     events). h1 is killed with SIGKILL; the takeover ends when status
//     is answered ready by h2 owning all 4 and a member.check of a user
//     from the tail in one of h1's partitions is answered.
//
// Each iteration kills the host the last one did not, after starting
// the killed one again (the standby, or taking its share back) and
// waiting for every partition's holder's snapshot in the Object Store.
//
// Figures: takeover-ms and lease-x (takeover over the lease), and, from
// the new owner's log, the phases after the kill: gained-ms (the lease
// expiring and taken), download-ms (the partitions' snapshots copied from
// the Object Store, added), load-ms (from the lease to the last partition
// loaded, less the downloads: the partitions start one after another),
// replay-ms (the log after the snapshots, until every partition is ready),
// snapshot-MB (the partitions' snapshots, added).
//
// It runs only when -bench names it (setting up takes minutes):
//
//	go test -run '^$' -bench Takeover1MUsers -benchtime 1x ./host/
func BenchmarkTakeover1MUsers(b *testing.B) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), "Takeover1MUsers") {
		b.Skip("runs only when -bench names Takeover1MUsers (setting up takes minutes)")
	}
	// With P above 1 a second host does not stand by but takes a share
	// (docs/operations.md, "Several active hosts"): the survivor takes
	// over only the dead host's half.
	b.Run("P=1", func(b *testing.B) { benchTakeover(b, 1, false) })
	b.Run("shared-P=4", func(b *testing.B) { benchTakeover(b, 4, true) })
}

// benchTakeover runs one arrangement: shared false is P = 1 with a hot
// standby; shared true is P above 1 over two active hosts, 2 of 4
// partitions each, the survivor taking the dead host's share.
func benchTakeover(b *testing.B, parts int, shared bool) {
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
			"--data-dir", filepath.Join(dir, "data-"+id), "--rules", rulesFile, "--snapshot-interval", "2s",
			"--partitions", strconv.Itoa(parts))
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
	waitObjectSnapshotAt(b, js, "h1", st.LastSeq, parts)
	pub(users*perUser, users*perUser+tail)
	st = waitCaughtUpB(b, js, c, time.Minute)
	b.Logf("state ready in %v: %d events applied by h1, last seq %d", time.Since(began).Round(time.Second), st.Events, st.LastSeq)
	standby := start("h2")
	owners := map[int]string{}
	if shared {
		// h2 takes its share: h1 hands 2 partitions over with a snapshot
		// each; h2 snapshots them again after a few more events, so that
		// every partition's newest snapshot is its holder's.
		owners = waitSharesKV(b, js, parts, "h1", "h2", 2*time.Minute)
		tailed := batch
		pub(users*perUser+tail, users*perUser+tail+tailed)
		st = waitCaughtUpB(b, js, c, 2*time.Minute)
		waitObjectSnapshotsOf(b, js, owners, st.LastSeq)
		b.Logf("h2 took its share %v", owners)
	} else {
		waitProcLog(b, standby, "standby: another host owns the stream", time.Minute)
	}

	owner, ownerID, standbyID := h1, "h1", "h2"
	// probeOf is a user of the tail in a partition the host about to die
	// holds (any user at P = 1): its member.check is answered only once
	// the survivor serves that partition.
	probeOf := func(victim string) string {
		for i := users*perUser + tail - 1; i >= users*perUser; i-- {
			u := fmt.Sprintf("user-%07d", i%users)
			if !shared || owners[ingest.Partition(u, parts)] == victim {
				return u
			}
		}
		b.Fatalf("no user of the tail in a partition of %s: %v", victim, owners)
		return ""
	}
	var total, gained, download, load, replay time.Duration
	var snapBytes int64
	tailed := 0 // events published after the first takeover
	if shared {
		tailed = batch
	}
	b.ResetTimer()
	for range b.N {
		probe := probeOf(ownerID)
		killed := time.Now()
		if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		_ = owner.wait()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.Status(ctx)
			if err == nil && st.Ready && st.Host == standbyID && (!shared || len(st.OwnedPartitions) == parts) {
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
		ph := takeoverPhases(b, standby.output(), killed)
		gained += ph.gained
		download += ph.download
		load += ph.load
		replay += ph.replay
		snapBytes = ph.bytes
		b.Logf("takeover %v (lease %v, P = %d, shared %v, killed %s, snapshots %d bytes): gained %v, download %v, load %v, replay to ready %v",
			took.Round(time.Millisecond), lease, parts, shared, ownerID, ph.bytes, ph.gained.Round(time.Millisecond),
			ph.download.Round(time.Millisecond), ph.load.Round(time.Millisecond), ph.replay.Round(time.Millisecond))

		// The killed host comes back: as the standby (P = 1), or taking
		// its share back (shared); every partition's holder has its
		// snapshot in the Object Store before the next kill.
		b.StopTimer()
		owner, ownerID, standbyID = standby, standbyID, ownerID
		standby = start(standbyID)
		if shared {
			owners = waitSharesKV(b, js, parts, ownerID, standbyID, 2*time.Minute)
		} else {
			waitProcLog(b, standby, "standby: another host owns the stream", time.Minute)
		}
		// Snapshots are taken while events arrive: a few more.
		tailed += batch
		pub(users*perUser+tail+tailed-batch, users*perUser+tail+tailed)
		st := waitCaughtUpB(b, js, c, 2*time.Minute)
		if shared {
			waitObjectSnapshotsOf(b, js, owners, st.LastSeq)
		} else {
			waitObjectSnapshotAt(b, js, ownerID, st.LastSeq, parts)
		}
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

// phases are the parts of one takeover, from the new owner's log.
type phases struct {
	gained   time.Duration // kill → the lease held
	download time.Duration // the partitions' snapshots copied from the Object Store (their took=, added)
	load     time.Duration // the lease held → the last partition's snapshot loaded, less download
	replay   time.Duration // the last snapshot loaded → the last partition ready
	bytes    int64         // the snapshots' sizes, added
}

// logLineRE finds a slog text line's time, message and the rest.
var logLineRE = regexp.MustCompile(`^time=(\S+) level=\S+ msg="([^"]*)"(.*)$`)

// tookRE and bytesRE find a "snapshot copied" line's duration and size.
var (
	tookRE  = regexp.MustCompile(` took=(\S+)`)
	bytesRE = regexp.MustCompile(` bytes=(\d+)`)
)

// takeoverPhases reads a new owner's log: only the lines after the kill
// (a host sharing partitions logged its own share's start before).
func takeoverPhases(b *testing.B, log string, killed time.Time) phases {
	var ph phases
	var gainedAt, lastLoaded, lastReady time.Time
	for _, line := range strings.Split(log, "\n") {
		m := logLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil || at.Before(killed) {
			continue
		}
		switch m[2] {
		case "partition gained":
			if gainedAt.IsZero() {
				gainedAt = at
			}
		case "snapshot copied from the Object Store":
			if t := tookRE.FindStringSubmatch(m[3]); t != nil {
				d, _ := time.ParseDuration(t[1])
				ph.download += d
			}
			if n := bytesRE.FindStringSubmatch(m[3]); n != nil {
				v, _ := strconv.ParseInt(n[1], 10, 64)
				ph.bytes += v
			}
		case "snapshot loaded":
			lastLoaded = at
		case "segd is ready: caught up with the event log":
			lastReady = at
		}
	}
	if gainedAt.IsZero() || lastLoaded.IsZero() || lastReady.IsZero() {
		b.Fatalf("the new owner's log lacks the lease, a snapshot loaded or ready:\n%s", log)
	}
	ph.gained = gainedAt.Sub(killed)
	ph.load = lastLoaded.Sub(gainedAt) - ph.download
	ph.replay = lastReady.Sub(lastLoaded)
	return ph
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
// snapshot of each of the partitions at seq or later.
func waitObjectSnapshotAt(b *testing.B, js jetstream.JetStream, host string, seq uint64, parts int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := cluster.OpenSnapshots(ctx, js, cluster.SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for n := 0; n < parts; {
		info, err := store.Newest(ctx, n, parts)
		if err == nil && info.Host == host && info.Seq >= seq {
			n++
			continue
		}
		if ctx.Err() != nil {
			b.Fatalf("no snapshot of %s at %d in the Object Store: %+v %v", host, seq, info, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the bucket
	}
}

// waitSharesKV waits until the owners bucket shows the partitions held
// half by host a and half by host b, and returns each partition's
// holder.
func waitSharesKV(b *testing.B, js jetstream.JetStream, parts int, a, c string, within time.Duration) map[int]string {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got map[int]string
	for {
		kv, err := js.KeyValue(ctx, cluster.OwnersBucket)
		if err == nil {
			got = map[int]string{}
			count := map[string]int{}
			for n := range parts {
				e, err := kv.Get(ctx, cluster.PartitionKey(n, parts))
				if err != nil {
					break
				}
				var h struct {
					Host string `json:"host"`
				}
				if json.Unmarshal(e.Value(), &h) == nil {
					got[n] = h.Host
					count[h.Host]++
				}
			}
			if len(got) == parts && count[a] == parts/2 && count[c] == parts-parts/2 {
				return got
			}
		}
		if ctx.Err() != nil {
			b.Fatalf("partitions not shared by %s and %s within %v: %v %v", a, c, within, got, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the bucket
	}
}

// waitObjectSnapshotsOf waits until the Object Store holds, for each
// partition, a snapshot by its holder at seq or later.
func waitObjectSnapshotsOf(b *testing.B, js jetstream.JetStream, owners map[int]string, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := cluster.OpenSnapshots(ctx, js, cluster.SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for n := 0; n < len(owners); {
		info, err := store.Newest(ctx, n, len(owners))
		if err == nil && info.Host == owners[n] && info.Seq >= seq {
			n++
			continue
		}
		if ctx.Err() != nil {
			b.Fatalf("no snapshot of partition %d by %s at %d in the Object Store: %+v %v", n, owners[n], seq, info, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the bucket
	}
}
