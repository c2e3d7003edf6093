package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/ingest"
)

// TestPartitionsOnDocumentedConfig: segd with two partitions starts with
// the permissions docs/security.md gives its identity, and a producer
// with the producer's publishes partition-aware.
// documentedServer starts a nats-server with the configuration
// docs/security.md gives operators, with random passwords for its users
// (set in the environment it reads them from: callers may not be
// parallel), and returns it with the passwords by role.
func documentedServer(t *testing.T) (*server.Server, map[string]string, string) {
	t.Helper()
	password := map[string]string{}
	for role, env := range map[string]string{"segd": "SEGD_PASSWORD", "producer": "SEGD_PRODUCER_PASSWORD",
		"reader": "SEGD_READER_PASSWORD", "admin": "SEGD_ADMIN_PASSWORD"} {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		password[role] = hex.EncodeToString(b)
		t.Setenv(env, password[role])
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(docBlock(t, "role-test: nats-server.conf")), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.StoreDir = "127.0.0.1", -1, filepath.Join(dir, "js")
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns, password, dir
}

func TestPartitionsOnDocumentedConfig(t *testing.T) { // not parallel: t.Setenv
	ns, password, dir := documentedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Start(ctx, Config{DataDir: filepath.Join(dir, "segd"), NATSURL: ns.ClientURL(), RulePaths: []string{writeRoleRules(t, dir)},
		NATSOptions: []nats.Option{nats.UserInfo("segd", password["segd"]), nats.CustomInboxPrefix("_INBOX.segd")},
		Partitions:  2, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("segd with 2 partitions and its documented permissions: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	connect := func(role string) *nats.Conn {
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(role, password[role]), nats.CustomInboxPrefix("_INBOX."+role))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	pjs, err := jetstream.New(connect("producer"))
	if err != nil {
		t.Fatal(err)
	}
	var items []api.Item
	parts := map[int]bool{}
	for i := range 8 {
		items = append(items, api.Item{User: fmt.Sprintf("buyer-%d", i), Event: "buy"})
		parts[ingest.Partition(items[i].User, 2)] = true
	}
	if len(parts) != 2 {
		t.Fatalf("the buyers are in %d partitions, want both", len(parts))
	}
	if _, err := client.PublishPartitioned(ctx, pjs, "segd.events.x", items, "", 2); err != nil {
		t.Fatalf("the producer publishes partition-aware: %v", err)
	}
	reader := client.New(connect("reader"))
	for _, it := range items {
		waitMember(ctx, t, reader, it.User, "buyers")
	}
}

// TestStandbyUnderDocumentedPermissions: two hosts whose NATS user has the
// segd permissions of docs/security.md share one stream: the second
// stands by while the first owns it (the lease in SEGD_OWNERS), then takes
// over from the snapshot the first left in SEGD_SNAPSHOTS when it stopped.
func TestStandbyUnderDocumentedPermissions(t *testing.T) { // not parallel: t.Setenv
	ns, password, dir := documentedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rules := writeRoleRules(t, dir)
	start := func(id string) (*Server, error) {
		return Start(ctx, Config{DataDir: filepath.Join(dir, "segd-"+id), NATSURL: ns.ClientURL(), RulePaths: []string{rules},
			NATSOptions: []nats.Option{nats.UserInfo("segd", password["segd"]), nats.CustomInboxPrefix("_INBOX.segd")},
			HostID:      id, Lease: 2 * time.Second,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}
	a, err := start("a")
	if err != nil {
		t.Fatalf("the first host under its documented permissions: %v", err)
	}
	type started struct {
		srv *Server
		err error
	}
	bDone := make(chan started, 1)
	go func() {
		b, err := start("b")
		bDone <- started{b, err}
	}()

	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("producer", password["producer"]), nats.CustomInboxPrefix("_INBOX.producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var items []api.Item
	for i := range 20 {
		items = append(items, api.Item{User: fmt.Sprintf("buyer-%d", i), Event: "buy"})
	}
	data, err := json.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pjs.Publish(ctx, "segd.events.shop", data); err != nil {
		t.Fatal(err)
	}
	rc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("reader", password["reader"]), nats.CustomInboxPrefix("_INBOX.reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	reader := client.New(rc)
	for _, it := range items {
		waitMember(ctx, t, reader, it.User, "buyers")
	}
	select {
	case b := <-bDone:
		t.Fatalf("the second host started while the first owns the stream: %v", b.err)
	default:
	}

	if err := a.Close(); err != nil {
		t.Fatalf("closing the owner: %v", err)
	}
	var b started
	select {
	case b = <-bDone:
	case <-ctx.Done():
		t.Fatal("the standby did not take over after the owner stopped")
	}
	if b.err != nil {
		t.Fatalf("the standby's takeover under its documented permissions: %v", b.err)
	}
	defer b.srv.Close()
	st, err := reader.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot == nil || st.Snapshot.Loaded == "" {
		t.Fatalf("the standby took over without the owner's snapshot (from SEGD_SNAPSHOTS): %+v", st.Snapshot)
	}
	if n, err := reader.SegmentCount(ctx, "buyers"); err != nil || n != uint64(len(items)) {
		t.Fatalf("buyers after the takeover: %d, %v; want %d", n, err, len(items))
	}
}
