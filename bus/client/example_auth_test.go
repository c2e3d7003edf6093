package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host"
)

// A Client takes any *nats.Conn, so connecting to a NATS server that
// requires credentials is the connection's business: here a reader's user
// and password (nats.UserCredentials, nats.Nkey and nats.ClientCert work
// the same way) and its own reply inbox, which docs/security.md's
// permissions allow a reader and nobody else.
func Example_credentials() {
	// A segd whose embedded NATS server admits only its users (segd serve
	// --auth FILE); the example starts one so that it runs.
	dir, _ := os.MkdirTemp("", "segd-example")
	defer os.RemoveAll(dir)
	rules := filepath.Join(dir, "rules.yaml")
	_ = os.WriteFile(rules, []byte("segments:\n  - id: buyers\n    did: {event: buy, last: 7d}\n"), 0o644)
	srv, err := host.Start(context.Background(), host.Config{DataDir: dir, RulePaths: []string{rules}, Listen: "127.0.0.1:0",
		Users:  []bus.User{{Name: "reader", Password: "s3cret", Role: bus.RoleReader}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	nc, err := nats.Connect(srv.ClientURL(),
		nats.UserInfo("reader", "s3cret"),
		nats.CustomInboxPrefix(bus.InboxPrefix("reader")), // _INBOX.reader
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	segs, err := client.New(nc).Segments(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range segs {
		fmt.Println(s.ID)
	}

	// Without credentials the server refuses the connection.
	if _, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err != nil {
		fmt.Println(err)
	}
	// Output:
	// buyers
	// nats: Authorization Violation
}
