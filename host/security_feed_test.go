package host

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// TestChangeFeedClientPerRole runs every way the Go client reads the
// change feed (client.ConsumeChanges: an ephemeral consumer; a durable one
// on some segments; the same durable resumed with another filter, and its
// Pending) as each role, under the permissions docs/security.md gives
// operators: the reader and the admin may (they need to create and update
// consumers on SEGD_CHANGES, which the doc says), the producer may not. It
// also checks the cap on SEGD_CHANGES's consumers, which bounds what those
// rights let a reader create.
func TestChangeFeedClientPerRole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and segd")
	}
	// Not parallel: startRoleEnv sets the passwords in the environment,
	// where the documented configuration reads them.
	e := startRoleEnv(t)
	ctx := context.Background()
	anc, err := e.connect("admin", make(chan error, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	if _, err := client.New(anc).Upload(ctx, "beta", []string{"b1", "b2"}, api.UploadReplace); err != nil {
		t.Fatal(err)
	}
	one := func(ctx context.Context, js jetstream.JetStream, opts client.ChangeConsumerOptions) (*client.ChangeConsumer, error) {
		got := make(chan struct{}, 1)
		c, err := client.ConsumeChanges(ctx, js, opts, func(client.ChangeMsg) error {
			select {
			case got <- struct{}{}:
			default:
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		select {
		case <-got:
			return c, nil
		case <-ctx.Done():
			c.Stop()
			return nil, fmt.Errorf("no change delivered: %w", ctx.Err())
		}
	}
	paths := map[string]roleAction{
		"an ephemeral consumer": func(ctx context.Context, _ string, _ *nats.Conn, js jetstream.JetStream) error {
			c, err := one(ctx, js, client.ChangeConsumerOptions{})
			if err == nil {
				c.Stop()
			}
			return err
		},
		"a durable on some segments, resumed with another filter": func(ctx context.Context, role string, _ *nats.Conn, js jetstream.JetStream) error {
			c, err := one(ctx, js, client.ChangeConsumerOptions{Durable: "feed-" + role, Segments: []string{"beta"}})
			if err != nil {
				return err
			}
			c.Stop()
			c, err = client.ConsumeChanges(ctx, js, client.ChangeConsumerOptions{Durable: "feed-" + role, Segments: []string{"beta", "buyers"}},
				func(client.ChangeMsg) error { return nil })
			if err != nil {
				return err
			}
			defer c.Stop()
			_, err = c.Pending(ctx)
			return err
		},
	}
	want := map[string]bool{"reader": true, "admin": true, "producer": false}
	for name, act := range paths {
		for role, ok := range want {
			if got, detail := e.try(role, name, act); got != ok {
				t.Errorf("%s as %s: allowed=%v, want %v (%s)", name, role, got, ok, detail)
			}
		}
	}

	s, err := e.segdJS.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxConsumers; got != bus.DefaultMaxChangeConsumers {
		t.Errorf("SEGD_CHANGES takes %d consumers; want the documented %d", got, bus.DefaultMaxChangeConsumers)
	}
}
