package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
func TestPartitionsOnDocumentedConfig(t *testing.T) { // not parallel: t.Setenv
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
