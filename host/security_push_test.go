package host

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// TestReaderPushConsumerCannotDriveSegd: a reader may create consumers on
// SEGD_CHANGES (docs/security.md), and JetStream lets the creator of a
// push consumer name any deliver subject: the server then publishes the
// feed there itself, past the reader's publish permissions. segd must not
// act on such deliveries: here a reader aims the changes of an API rule
// (whose messages carry {"segment": ...}) at rule.delete, with and
// without acks, and the rule stays. A reader's own feed (pull, as the
// client reads it) keeps working.
func TestReaderPushConsumerCannotDriveSegd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts segd")
	}
	t.Parallel()
	e := startEmbeddedRoleEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := func(role string) *nats.Conn {
		nc, err := e.connect(role, make(chan error, 1))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	admin := client.New(conn("admin"))
	if _, err := admin.PutRule(ctx, api.RulePutRequest{Definition: "id: victim\ndid: {event: buy, last: 7d}\n"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		r, err := admin.GetRule(ctx, "victim")
		if err == nil && r.State == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim not active: %+v, %v", r, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronization
	}
	pjs, err := jetstream.New(conn("producer"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.PublishBatch(ctx, pjs, "segd.events.push", []api.Item{{User: "buyer-1", Event: "buy"}}, ""); err != nil {
		t.Fatal(err)
	}
	waitMember(ctx, t, admin, "buyer-1", "victim")

	reader := conn("reader")
	for _, ack := range []string{"none", "explicit"} {
		name := "push-" + ack
		req, _ := json.Marshal(map[string]any{"stream_name": api.ChangesStream, "config": map[string]any{
			"durable_name": name, "deliver_subject": api.SubjectRuleDelete, "deliver_group": "q", "ack_policy": ack, "deliver_policy": "all",
			"filter_subject": api.ChangesSubjectPrefix + "victim"}})
		msg, err := reader.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE."+api.ChangesStream+"."+name, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var rep struct {
			Error *struct{ Description string } `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Error != nil {
			t.Fatalf("%s: the reader could not create it (%s): the test needs the documented rights", name, msg.Data)
		}
		// Delivered: the server sent the change to rule.delete.
		for deadline := time.Now().Add(30 * time.Second); ; {
			var info struct {
				Delivered struct {
					Consumer uint64 `json:"consumer_seq"`
				} `json:"delivered"`
			}
			msg, err := reader.RequestWithContext(ctx, "$JS.API.CONSUMER.INFO."+api.ChangesStream+"."+name, nil)
			if err == nil && json.Unmarshal(msg.Data, &info) == nil && info.Delivered.Consumer > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: nothing delivered: %v", name, err)
			}
			time.Sleep(10 * time.Millisecond) // polling interval, not synchronization
		}
	}
	// segd handles requests in order per endpoint: a request answered now
	// comes after the deliveries.
	if _, err := admin.DeleteRule(ctx, api.RuleRequest{Segment: "no_such_rule"}); !client.IsNotFound(err) {
		t.Fatalf("rule.delete of an unknown rule: %v", err)
	}
	r, err := admin.GetRule(ctx, "victim")
	if err != nil || r.State != "active" {
		t.Fatalf("after a reader aimed the feed at rule.delete: %+v, %v; want the rule kept", r, err)
	}
}
