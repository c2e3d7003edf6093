package host

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// roleActions are the matrix rows, by the action names of the doc's table.
func roleActions(e *roleEnv, betaSize int) map[string]roleAction {
	return map[string]roleAction{
		"connect": func(context.Context, string, *nats.Conn, jetstream.JetStream) error { return nil },
		"publish events on segd.events.>": func(ctx context.Context, role string, _ *nats.Conn, js jetstream.JetStream) error {
			_, err := client.PublishBatch(ctx, js, "segd.events.roletest", []api.Item{{User: "buyer-" + role, Event: "buy"}}, "")
			return err
		},
		"forge an upload on segd.control.>": func(ctx context.Context, role string, _ *nats.Conn, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, bus.ControlUploadSubject, fmt.Appendf(nil, `{"segment":"forged","users":["by-%s"],"replace":false}`, role))
			return err
		},
		"member.check on segd.v1.>": func(ctx context.Context, _ string, nc *nats.Conn, _ jetstream.JetStream) error {
			_, err := client.New(nc).IsMember(ctx, "u1", "buyers")
			return err
		},
		"discover the service on $SRV.>": func(ctx context.Context, _ string, nc *nats.Conn, _ jetstream.JetStream) error {
			msg, err := nc.RequestWithContext(ctx, "$SRV.PING."+api.ServiceName, nil)
			if err != nil {
				return err
			}
			if !strings.Contains(string(msg.Data), api.ServiceName) {
				return fmt.Errorf("ping reply %s", msg.Data)
			}
			return nil
		},
		"export through Object Store SEGD_EXPORTS": func(ctx context.Context, _ string, nc *nats.Conn, _ jetstream.JetStream) error {
			ex, err := client.New(nc).Export(ctx, "beta", api.FormatIDs)
			if err != nil {
				return err
			}
			if ex.Object == "" || len(ex.Users) != betaSize {
				return fmt.Errorf("export: object %q, %d users, want an object of %d", ex.Object, len(ex.Users), betaSize)
			}
			return nil
		},
		"upload on segd.admin.v1.>": func(ctx context.Context, role string, nc *nats.Conn, _ jetstream.JetStream) error {
			_, err := client.New(nc).Upload(ctx, "uploads", []string{"up-" + role}, api.UploadAppend)
			return err
		},
		"upload a plugin module into Object Store SEGD_PLUGINS": func(ctx context.Context, role string, _ *nats.Conn, js jetstream.JetStream) error {
			obj, err := js.ObjectStore(ctx, api.PluginsBucket)
			if err != nil {
				return err
			}
			_, err = obj.PutBytes(ctx, api.PluginUploadPrefix+"roletest/"+role, []byte("\x00asm\x01\x00\x00\x00"))
			return err
		},
		"preview a rule on segd.admin.v1.>": func(ctx context.Context, _ string, nc *nats.Conn, _ jetstream.JetStream) error {
			r, err := client.New(nc).Preview(ctx, "id: preview_buyers\ndid: {event: buy, last: 7d}\n", 10)
			if err != nil {
				return err
			}
			if r.Size == 0 {
				return fmt.Errorf("preview: %+v, want the buyers", r)
			}
			return nil
		},
		"read the change feed (durable on SEGD_CHANGES)": func(ctx context.Context, role string, _ *nats.Conn, js jetstream.JetStream) error {
			got := make(chan struct{}, 1)
			c, err := client.ConsumeChanges(ctx, js, client.ChangeConsumerOptions{Durable: "watch-" + role},
				func(client.ChangeMsg) error {
					select {
					case got <- struct{}{}:
					default:
					}
					return nil
				})
			if err != nil {
				return err
			}
			defer c.Stop()
			select {
			case <-got:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("no change delivered: %w", ctx.Err())
			}
		},
		"publish on segd.changes.>": func(ctx context.Context, role string, _ *nats.Conn, js jetstream.JetStream) error {
			ch, _ := json.Marshal(api.Change{User: "forged-by-" + role, Segment: "buyers", Change: api.ChangeEnter, Time: time.Now().Format(time.RFC3339)})
			_, err := js.Publish(ctx, api.ChangesSubjectPrefix+"forged-"+role, ch)
			return err
		},
		"answer in segd's place (subscribe segd.v1.>)": func(_ context.Context, _ string, nc *nats.Conn, _ jetstream.JetStream) error {
			if _, err := nc.QueueSubscribeSync(api.SubjectMemberCheck, "q"); err != nil {
				return err
			}
			return nc.Flush()
		},
		"read others' replies (subscribe _INBOX.>)": func(_ context.Context, _ string, nc *nats.Conn, _ jetstream.JetStream) error {
			if _, err := nc.SubscribeSync("_INBOX.>"); err != nil {
				return err
			}
			return nc.Flush()
		},
		"read the raw events (consumer on SEGD_EVENTS)": func(ctx context.Context, _ string, _ *nats.Conn, js jetstream.JetStream) error {
			c, err := js.OrderedConsumer(ctx, bus.EventsStream, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return err
			}
			_, err = c.Next(jetstream.FetchContext(ctx))
			return err
		},
		"delete stream SEGD_EVENTS": func(ctx context.Context, _ string, _ *nats.Conn, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, bus.EventsStream)
		},
		"purge stream SEGD_CHANGES": func(ctx context.Context, _ string, _ *nats.Conn, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, api.ChangesStream)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		},
	}
}
