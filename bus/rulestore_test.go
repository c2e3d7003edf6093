package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// TestRuleStoreWithItsPermissionsOnly runs every RuleStore operation as a
// user allowed to publish only RuleStorePermissions (and subscribe to its
// inbox), as segd's own identity is under authentication: revisions,
// expected-revision conflicts (409), deletes that keep history.
func TestRuleStoreWithItsPermissionsOnly(t *testing.T) {
	t.Parallel()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "segd", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: RuleStorePermissions},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.segd.>"}},
		}}}}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	denied := make(chan error, 16)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("segd", "pw"), nats.CustomInboxPrefix("_INBOX.segd"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { denied <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := OpenRuleStore(ctx, js)
	if err != nil {
		close(denied)
		for e := range denied {
			t.Log(e)
		}
		t.Fatal(err)
	}
	if all, err := st.All(ctx); err != nil || len(all) != 0 {
		t.Fatalf("an empty bucket: %v %v", all, err)
	}
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	zero := uint64(0)
	r1, err := st.Put(ctx, "buyers", "id: buyers\n", "ana", at, &zero)
	if err != nil {
		t.Fatal(err)
	}
	var be *Error
	if _, err := st.Put(ctx, "buyers", "id: buyers\n#2\n", "bo", at, &zero); !errors.As(err, &be) || be.Code != api.CodeConflict {
		t.Fatalf("a create over an existing key: %v, want 409", err)
	}
	r2, err := st.Put(ctx, "buyers", "id: buyers\n#2\n", "bo", at, &r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("an update at the expected revision: %d, %v", r2, err)
	}
	if _, err := st.Delete(ctx, "buyers", &r1); !errors.As(err, &be) || be.Code != api.CodeConflict {
		t.Fatalf("a delete at a stale revision: %v, want 409", err)
	}
	if e, err := st.Get(ctx, "buyers"); err != nil || e.Revision != r2 || e.Author != "bo" || !e.Time.Equal(at) {
		t.Fatalf("get: %+v %v", e, err)
	}
	if all, err := st.All(ctx); err != nil || len(all) != 1 {
		t.Fatalf("all: %+v %v", all, err)
	}
	d, err := st.Delete(ctx, "buyers", &r2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "buyers"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	h, err := st.History(ctx, "buyers")
	if err != nil || len(h) != 3 || h[0].Definition != "id: buyers\n" || !h[2].Deleted || h[2].Revision != d {
		t.Fatalf("history: %+v %v", h, err)
	}
	select {
	case err := <-denied:
		t.Fatalf("NATS refused an operation: %v", err)
	default:
	}
}
