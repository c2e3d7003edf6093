package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/clustertest"
)

// randReader streams n deterministic pseudo-random bytes without holding
// them, and hashes what it produced.
type randReader struct {
	rng  *rand.ChaCha8
	left int64
	sum  interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func newRandReader(seed byte, n int64) *randReader {
	var s [32]byte
	s[0] = seed
	return &randReader{rng: rand.NewChaCha8(s), left: n, sum: sha256.New()}
}

func (r *randReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	r.rng.Read(p)
	r.sum.Write(p)
	r.left -= int64(len(p))
	return len(p), nil
}

func digest(t *testing.T, s *SnapshotStore, ctx context.Context, info SnapshotInfo) ([]byte, int64) {
	t.Helper()
	r, err := s.Get(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("read %s: %v", info.Name, err)
	}
	return h.Sum(nil), n
}

// TestSnapshotsOnClusterSurviveNodeLoss puts snapshots of two partitions
// in an R3 bucket (one of 6 MiB, streamed), reads the newest from another
// host's connection, kills the bucket's leader node, then reads, puts and
// prunes through the survivors.
func TestSnapshotsOnClusterSurviveNodeLoss(t *testing.T) {
	t.Parallel()
	c := clustertest.Start(t, clustertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	js, _ := jetstream.New(c.Connect(t))
	s, err := OpenSnapshots(ctx, js, SnapshotOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Newest(ctx, 1, 4); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Newest of an empty bucket: %v, want ErrNoSnapshot", err)
	}

	const big = 6 << 20
	want := map[uint64][]byte{}
	for _, seq := range []uint64{100, 2500, 900} { // out of order on purpose
		size := int64(1000)
		if seq == 2500 {
			size = big
		}
		rr := newRandReader(byte(seq), size)
		info, err := s.Put(ctx, SnapshotInfo{Partition: 1, Partitions: 4, Seq: seq, Host: "a", Token: 7}, rr)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != uint64(size) || info.Name != "p1of4/"+itoa(seq) || info.Token != 7 || info.Host != "a" {
			t.Fatalf("put info %+v", info)
		}
		want[seq] = rr.sum.Sum(nil)
	}
	if _, err := s.Put(ctx, SnapshotInfo{Partition: 0, Partitions: 4, Seq: 5000}, strings.NewReader("other")); err != nil {
		t.Fatal(err)
	}

	// Another host reads the newest.
	other, err := OpenSnapshots(ctx, mustJS(t, c, -1), SnapshotOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Another node's replica may not have applied the last puts yet (a
	// listing read there lags; an owner that reads an older snapshot
	// replays more of the log, nothing worse): the newest is seen within
	// a bound.
	var newest SnapshotInfo
	for deadline := time.Now().Add(15 * time.Second); ; {
		newest, err = other.Newest(ctx, 1, 4)
		if err != nil {
			t.Fatal(err)
		}
		if newest.Seq == 2500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the replica, bounded above
	}
	if newest.Seq != 2500 || newest.Size != big {
		t.Fatalf("newest %+v, want seq 2500 of %d bytes (p0of4's 5000 is another partition)", newest, big)
	}
	if sum, n := digest(t, other, ctx, newest); string(sum) != string(want[2500]) || n != big {
		t.Fatalf("read back %d bytes with another digest", n)
	}

	// Kill the bucket's leader; read and write through a survivor.
	leader := c.StreamLeader(ctx, js, "OBJ_"+SnapshotsBucket)
	if leader < 0 {
		t.Fatal("snapshots bucket has no leader")
	}
	c.Kill(leader)
	surv, err := OpenSnapshots(ctx, mustJS(t, c, (leader+1)%c.Size()), SnapshotOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	// The survivors need a new leader first: retry until it answers.
	for {
		newest, err = surv.Newest(ctx, 1, 4)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no snapshot listing after the leader died: %v", err)
		}
	}
	if sum, _ := digest(t, surv, ctx, newest); newest.Seq != 2500 || string(sum) != string(want[2500]) {
		t.Fatalf("after the kill: newest %d, digest differs %v", newest.Seq, string(sum) != string(want[2500]))
	}
	// A put is not retried inside (its reader is consumed): right after a
	// leader change the caller retries with a fresh reader.
	for {
		rr := newRandReader(3, 4096)
		_, err := surv.Put(ctx, SnapshotInfo{Partition: 1, Partitions: 4, Seq: 3000}, rr)
		if err == nil {
			want[3000] = rr.sum.Sum(nil)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no put after the leader died: %v", err)
		}
	}

	n, err := surv.Prune(ctx, 1, 4, 2)
	if err != nil || n != 2 {
		t.Fatalf("prune: %d, %v; want 2 deleted", n, err)
	}
	left, err := surv.List(ctx, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0].Seq != 2500 || left[1].Seq != 3000 {
		t.Fatalf("after prune: %+v, want seqs 2500 and 3000", left)
	}
	if sum, _ := digest(t, surv, ctx, left[1]); string(sum) != string(want[3000]) {
		t.Fatal("snapshot 3000 reads back different")
	}
	if _, err := surv.Get(ctx, SnapshotInfo{Partition: 1, Partitions: 4, Seq: 100}); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("get a pruned snapshot: %v, want ErrNoSnapshot", err)
	}
	if o, err := surv.List(ctx, 0, 4); err != nil || len(o) != 1 {
		t.Fatalf("prune of p1of4 touched p0of4: %+v %v", o, err)
	}
	c.Restart(leader)
}

// TestSnapshotsRejectBadInput checks partition numbers and prune counts.
func TestSnapshotsRejectBadInput(t *testing.T) {
	t.Parallel()
	s := &SnapshotStore{}
	ctx := context.Background()
	for _, np := range [][2]int{{4, 4}, {-1, 4}, {0, 0}, {0, 257}} {
		if _, err := s.Put(ctx, SnapshotInfo{Partition: np[0], Partitions: np[1]}, strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "partition") {
			t.Errorf("Put p%dof%d: %v", np[0], np[1], err)
		}
		if _, err := s.List(ctx, np[0], np[1]); err == nil {
			t.Errorf("List p%dof%d: no error", np[0], np[1])
		}
	}
	if _, err := s.Prune(ctx, 0, 1, 0); err == nil || !strings.Contains(err.Error(), "keep 0") {
		t.Errorf("Prune keep 0: %v", err)
	}
}

// TestSnapshotNamesParse checks that only names by the rule count as
// snapshots.
func TestSnapshotNamesParse(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"p1of4/100": true, "p0of1/0": true,
		"p1of4/": false, "p1of4/x": false, "p4of4/1": false, "p01of4/1": false,
		"q1of4/1": false, "p1of4": false, "p1of4/1/2": false, "p1of4/+1": false,
	} {
		_, got := parseInfo(&jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: name}})
		if got != ok {
			t.Errorf("%q: snapshot %v, want %v", name, got, ok)
		}
	}
}

func itoa(u uint64) string { return strconv.FormatUint(u, 10) }

func mustJS(t *testing.T, c *clustertest.Cluster, node int) jetstream.JetStream {
	t.Helper()
	nc := c.Connect(t)
	if node >= 0 {
		nc = c.ConnectNode(t, node)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
