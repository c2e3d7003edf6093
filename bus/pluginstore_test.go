package bus

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// TestPluginStoreWithItsPermissionsOnly runs every PluginStore operation
// as a user allowed to publish only PluginStorePermissions (with
// $JS.API.INFO, which segd's role has through RuleStorePermissions), as
// segd's own identity is under authentication, and an upload larger than
// the max payload as a user with PluginUploadPermissions alone, as an
// admin's client does it.
func TestPluginStoreWithItsPermissionsOnly(t *testing.T) {
	t.Parallel()
	inbox := func(u string) *server.SubjectPermission {
		return &server.SubjectPermission{Allow: []string{"_INBOX." + u + ".>"}}
	}
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "segd", Password: "pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: append([]string{"$JS.API.INFO"}, PluginStorePermissions...)}, Subscribe: inbox("segd")}},
			{Username: "admin", Password: "pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: PluginUploadPermissions}, Subscribe: inbox("admin")}},
		}}
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
	connect := func(user string) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, "pw"), nats.CustomInboxPrefix("_INBOX."+user),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { denied <- err }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	js, adminJS := connect("segd"), connect("admin")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := OpenPluginStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if all, err := st.All(ctx); err != nil || len(all) != 0 {
		t.Fatalf("an empty bucket: %v %v", all, err)
	}
	if _, _, err := st.Get(ctx, "amount"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a missing plugin: %v, want not found", err)
	}

	// The admin uploads a module over the max payload.
	module := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{7}, int(js.Conn().MaxPayload())+1000)...)
	obj, err := adminJS.ObjectStore(ctx, PluginsBucket)
	if err != nil {
		t.Fatal(err)
	}
	upload := api.PluginUploadPrefix + "amount/" + Digest(module)
	if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: upload}, bytes.NewReader(module)); err != nil {
		t.Fatal(err)
	}
	if all, err := st.All(ctx); err != nil || len(all) != 0 {
		t.Fatalf("uploads are not plugins: %v %v", all, err)
	}
	var be *Error
	if _, err := st.ReadUpload(ctx, upload, Digest(module), int64(len(module)-1)); !errors.As(err, &be) || be.Code != api.CodeBadRequest ||
		!strings.Contains(err.Error(), "over the module limit") {
		t.Fatalf("an upload over the limit: %v, want 400", err)
	}
	if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: upload}, bytes.NewReader(module)); err != nil {
		t.Fatal(err)
	}
	got, err := st.ReadUpload(ctx, upload, Digest(module), int64(len(module)))
	if err != nil || !bytes.Equal(got, module) {
		t.Fatalf("read upload: %d bytes, %v", len(got), err)
	}
	if _, err := obj.GetInfo(ctx, upload); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("the upload is kept after it was read: %v", err)
	}

	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	e, err := st.Put(ctx, "amount", got, "props: [amount]\n", "ana", at)
	if err != nil || e.Digest != Digest(module) {
		t.Fatalf("put: %+v %v", e, err)
	}
	e2, wasm, err := st.Get(ctx, "amount")
	if err != nil || !bytes.Equal(wasm, module) || e2.Digest != e.Digest || e2.Manifest != "props: [amount]\n" || e2.Author != "ana" ||
		!e2.Time.Equal(at) || e2.Size != len(module) {
		t.Fatalf("get: %+v, %d bytes, %v", e2, len(wasm), err)
	}
	if _, err := st.Put(ctx, "amount", module[:100], "", "bo", at); err != nil {
		t.Fatalf("a second version: %v", err)
	}
	if all, err := st.All(ctx); err != nil || len(all) != 1 || all[0].Size != 100 || all[0].Author != "bo" {
		t.Fatalf("all after a second version: %+v %v", all, err)
	}
	if err := st.Delete(ctx, "amount"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "amount"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a second delete: %v, want not found", err)
	}
	select {
	case err := <-denied:
		t.Fatalf("NATS refused an operation: %v", err)
	default:
	}
}
