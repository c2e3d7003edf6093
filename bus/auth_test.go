package bus

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/natsconn/natsconntest"
)

// docConfig writes the nats-server configuration of docs/security.md to a
// file (the block after its marker), as the role test in host runs it.
func docConfig(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- role-test: nats-server.conf -->\n```\n")
	if !ok {
		t.Fatal("docs/security.md: no configuration block")
	}
	block, _, _ := strings.Cut(rest, "```\n")
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRolePermissionsMatchDoc: the permissions the embedded server gives
// each role (RolePermissions) are the ones docs/security.md gives
// operators, which the role test checks against a real server.
func TestRolePermissionsMatchDoc(t *testing.T) {
	for _, v := range []string{"SEGD_PASSWORD", "SEGD_PRODUCER_PASSWORD", "SEGD_READER_PASSWORD", "SEGD_ADMIN_PASSWORD"} {
		t.Setenv(v, "x")
	}
	opts, err := server.ProcessConfigFile(docConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	sorted := func(p *server.SubjectPermission) []string {
		if p == nil {
			return nil
		}
		return slices.Sorted(slices.Values(p.Allow))
	}
	seen := 0
	for _, u := range opts.Users {
		want, err := RolePermissions(u.Username, u.Username)
		if err != nil {
			t.Fatalf("doc user %q: %v", u.Username, err)
		}
		got := u.Permissions
		if !slices.Equal(sorted(got.Publish), sorted(want.Publish)) {
			t.Errorf("%s publish:\n doc  %q\n code %q", u.Username, sorted(got.Publish), sorted(want.Publish))
		}
		if !slices.Equal(sorted(got.Subscribe), sorted(want.Subscribe)) {
			t.Errorf("%s subscribe:\n doc  %q\n code %q", u.Username, sorted(got.Subscribe), sorted(want.Subscribe))
		}
		if (got.Response == nil) != (want.Response == nil) || got.Response != nil && *got.Response != *want.Response {
			t.Errorf("%s responses: doc %+v, code %+v", u.Username, got.Response, want.Response)
		}
		seen++
	}
	if seen != 4 {
		t.Fatalf("the doc has %d users, want the 4 roles", seen)
	}
}

// TestEmbeddedRefusesOpenNetwork: an embedded server on a non-loopback
// address without users does not start, and says how to add them; with
// users, or --insecure, it does.
func TestEmbeddedRefusesOpenNetwork(t *testing.T) {
	t.Parallel()
	_, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Host: "0.0.0.0", Port: -1})
	if err == nil || !strings.Contains(err.Error(), "--auth FILE") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("0.0.0.0 without auth: %v", err)
	}
	for _, o := range []EmbeddedOptions{
		{Host: "0.0.0.0", Insecure: true},
		{Host: "0.0.0.0", Users: []User{{Name: "r", Password: "p", Role: RoleReader}}},
		{Host: "localhost"}, {Host: "::1"},
	} {
		o.DataDir, o.Port = t.TempDir(), -1
		e, err := StartEmbedded(o)
		if err != nil {
			if o.Host == "::1" && strings.Contains(err.Error(), "cannot assign") {
				continue // no IPv6 loopback here
			}
			t.Fatalf("%+v: %v", o, err)
		}
		e.Shutdown()
	}
}

// TestEmbeddedAuthAndTLS: with users and mutual TLS, network clients need
// both a certificate and credentials (password or nkey), anonymous ones are
// refused, and segd's own in-process connection works without either.
func TestEmbeddedAuthAndTLS(t *testing.T) {
	t.Parallel()
	pki := natsconntest.NewPKI(t)
	nk := natsconntest.NewNKeyUser(t)
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Port: -1, TLS: pki.ServerTLS(t, true), TLSVerify: true,
		Users:        []User{{Name: "reader", Password: "s3cret", Role: RoleReader}, {Name: "producer", NKey: nk.Public, Role: RoleProducer}},
		ReadyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	self, err := e.Connect()
	if err != nil {
		t.Fatalf("in-process: %v", err)
	}
	defer self.Close()
	if _, err := EnsureEventsStream(t.Context(), mustJS(t, self), StreamConfig{}); err != nil {
		t.Fatalf("segd's own connection: %v", err)
	}
	tlsOpts := []nats.Option{nats.RootCAs(pki.CA), nats.ClientCert(pki.ClientCert, pki.ClientKey), nats.MaxReconnects(0)}
	nkOpt, err := nats.NkeyOptionFromSeed(nk.SeedFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		opts []nats.Option
		ok   bool
	}{
		"reader":              {append(slices.Clone(tlsOpts), nats.UserInfo("reader", "s3cret")), true},
		"producer nkey":       {append(slices.Clone(tlsOpts), nkOpt), true},
		"wrong password":      {append(slices.Clone(tlsOpts), nats.UserInfo("reader", "nope")), false},
		"anonymous":           {tlsOpts, false},
		"no client cert":      {[]nats.Option{nats.RootCAs(pki.CA), nats.UserInfo("reader", "s3cret"), nats.MaxReconnects(0)}, false},
		"segd over the wire":  {append(slices.Clone(tlsOpts), nats.UserInfo(RoleService, "guess")), false},
		"no TLS verification": {[]nats.Option{nats.UserInfo("reader", "s3cret"), nats.MaxReconnects(0)}, false},
	} {
		nc, err := nats.Connect(e.ClientURL(), c.opts...)
		if err == nil {
			err = nc.Flush()
			nc.Close()
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: connect error %v, want ok=%v", name, err, c.ok)
		}
	}
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestDocumentedAuthFile: the auth file example of docs/security.md is
// one segd serve --auth accepts.
func TestDocumentedAuthFile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```yaml\nusers:\n")
	if !ok {
		t.Fatal("docs/security.md: no auth file example")
	}
	block, _, _ := strings.Cut(rest, "```\n")
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte("users:\n"+block), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := ReadAuthFile(path)
	if err != nil || len(users) != 3 || users[1].NKey == "" {
		t.Fatalf("the documented auth file: %v %+v", err, users)
	}
}

// TestAuthFileErrors: what an auth file gets wrong is named.
func TestAuthFileErrors(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		"users: []\n": "no users",
		"users:\n  - user: a\n    password: p\n    role: root\n":                                                  `user "a": role "root"`,
		"users:\n  - user: a\n    role: reader\n":                                                                 `user "a": give either a password or an nkey`,
		"users:\n  - user: a\n    password: p\n    nkey: UABC\n    role: reader\n":                                `give either`,
		"users:\n  - user: a\n    nkey: SUAB\n    role: reader\n":                                                 `not a user public key`,
		"users:\n  - user: a\n    password: p\n    role: reader\n    colour: red\n":                               "field colour not found",
		"users:\n  - user: a\n    password: p\n    role: reader\n  - user: a\n    password: q\n    role: admin\n": `user "a" appears twice`,
		"users:\n  - user: segd\n    password: p\n    role: reader\n":                                             "segd's own",
		"users:\n  - user: a.b\n    password: p\n    role: reader\n":                                              "dots",
		"users:\n  - password: p\n    role: reader\n":                                                             `"user" is missing`,
	} {
		path := filepath.Join(t.TempDir(), "auth.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadAuthFile(path); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v, want an error naming the file and %q", body, err, want)
		}
	}
}
