package natsconn_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/natsconn"
	"github.com/segd/segd/bus/natsconn/natsconntest"
)

func envMap(m map[string]string) natsconn.Getenv { return func(k string) string { return m[k] } }

// connect resolves s and connects, as segd serve and the CLI do.
func connect(t *testing.T, s natsconn.Settings, env map[string]string) (*nats.Conn, error) {
	t.Helper()
	url, opts, err := s.Resolve(envMap(env))
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...)
	if err != nil {
		return nil, natsconn.Explain(url, err)
	}
	t.Cleanup(nc.Close)
	// A round trip: the server accepted the connection, not just the dial.
	return nc, nc.Flush()
}

// TestEachCredentialKind connects to real nats-servers that require a
// password, an nkey, a JWT credentials file, TLS with a private CA, and
// mutual TLS; each works with its option and is refused without it.
func TestEachCredentialKind(t *testing.T) {
	t.Parallel()
	pki := natsconntest.NewPKI(t)
	nk := natsconntest.NewNKeyUser(t)
	op := natsconntest.NewOperator(t)
	cases := []struct {
		name    string
		server  func(*server.Options)
		ok, bad natsconn.Settings
		badErr  string
	}{
		{"password", func(o *server.Options) { o.Users = []*server.User{{Username: "reader", Password: "s3cret"}} },
			natsconn.Settings{User: "reader", Password: "s3cret"}, natsconn.Settings{User: "reader", Password: "wrong"}, "--user/--password"},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: nk.Public}} },
			natsconn.Settings{NKey: nk.SeedFile}, natsconn.Settings{}, "--nkey"},
		{"creds", func(o *server.Options) { op.Configure(t, o) },
			natsconn.Settings{Creds: op.Creds}, natsconn.Settings{}, "--creds"},
		{"tls", func(o *server.Options) { o.TLSConfig, o.TLS = pki.ServerTLS(t, false), true },
			natsconn.Settings{CA: pki.CA}, natsconn.Settings{}, "certificate"},
		{"mtls", func(o *server.Options) { o.TLSConfig, o.TLS, o.TLSVerify = pki.ServerTLS(t, true), true, true },
			natsconn.Settings{CA: pki.CA, Cert: pki.ClientCert, Key: pki.ClientKey}, natsconn.Settings{CA: pki.CA}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			opts := &server.Options{}
			c.server(opts)
			_, url := natsconntest.Start(t, opts)
			c.ok.URL, c.bad.URL = url, url
			if _, err := connect(t, c.ok, nil); err != nil {
				t.Fatalf("with %+v: %v", c.ok, err)
			}
			_, err := connect(t, c.bad, nil)
			if err == nil {
				t.Fatalf("connected without the credential (%+v)", c.bad)
			}
			if !strings.Contains(err.Error(), c.badErr) {
				t.Errorf("refusal %q does not mention %q", err, c.badErr)
			}
		})
	}
}

// TestContextAndEnvironment: a natscli context file (as natscli writes it,
// with fields segd ignores) and the NATS_* variables give the URL and the
// credentials; flags win over the environment, which wins over the
// context.
func TestContextAndEnvironment(t *testing.T) {
	t.Parallel()
	opts := &server.Options{Users: []*server.User{
		{Username: "reader", Password: "from-context"}, {Username: "env", Password: "from-env"}, {Username: "flag", Password: "from-flag"}}}
	_, url := natsconntest.Start(t, opts)
	config := t.TempDir()
	dir := filepath.Join(config, "nats", "context")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctxJSON := `{
  "description": "segd reader",
  "url": "` + url + `",
  "token": "",
  "user": "reader",
  "password": "from-context",
  "creds": "",
  "nkey": "",
  "cert": "",
  "key": "",
  "ca": "",
  "nsc": "",
  "jetstream_domain": "",
  "jetstream_api_prefix": "",
  "jetstream_event_prefix": "",
  "inbox_prefix": "_INBOX.reader",
  "user_jwt": "",
  "color_scheme": "",
  "tls_first": false
}`
	if err := os.WriteFile(filepath.Join(dir, "segd.json"), []byte(ctxJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"XDG_CONFIG_HOME": config}

	nc, err := connect(t, natsconn.Settings{Context: "segd"}, env)
	if err != nil {
		t.Fatalf("--context segd: %v", err)
	}
	if nc.ConnectedUrl() == "" || nc.Opts.User != "reader" || !strings.HasPrefix(nc.NewInbox(), "_INBOX.reader.") {
		t.Errorf("context: user %q, inbox %s", nc.Opts.User, nc.NewInbox())
	}
	env[natsconn.EnvContext] = "segd"
	if nc, err = connect(t, natsconn.Settings{}, env); err != nil || nc.Opts.User != "reader" {
		t.Fatalf("NATS_CONTEXT=segd: %v", err)
	}
	env[natsconn.EnvUser], env[natsconn.EnvPassword] = "env", "from-env"
	if nc, err = connect(t, natsconn.Settings{}, env); err != nil || nc.Opts.User != "env" {
		t.Fatalf("NATS_USER over the context: %v", err)
	}
	if nc, err = connect(t, natsconn.Settings{User: "flag", Password: "from-flag"}, env); err != nil || nc.Opts.User != "flag" {
		t.Fatalf("--user over NATS_USER: %v", err)
	}
	// The URL alone from the environment, credentials from flags.
	if _, err = connect(t, natsconn.Settings{User: "flag", Password: "from-flag"}, map[string]string{natsconn.EnvURL: url}); err != nil {
		t.Fatalf("NATS_URL: %v", err)
	}
	// A context given as a file path.
	if nc, err = connect(t, natsconn.Settings{Context: filepath.Join(dir, "segd.json")}, nil); err != nil || nc.Opts.User != "reader" {
		t.Fatalf("--context FILE: %v", err)
	}
}

// TestBadSettings: settings that would drop a credential or name a file
// that is not there are errors that say which option, before any dial.
func TestBadSettings(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope")
	for _, c := range []struct {
		s    natsconn.Settings
		want string
	}{
		{natsconn.Settings{User: "u"}, "--user and --password go together"},
		{natsconn.Settings{User: "u", Password: "p", Creds: os.Args[0]}, "give one of"},
		{natsconn.Settings{Creds: missing}, "--creds"},
		{natsconn.Settings{NKey: missing}, "--nkey"},
		{natsconn.Settings{Cert: missing}, "--tlscert and --tlskey go together"},
		{natsconn.Settings{Cert: missing, Key: missing}, "--tlscert"},
		{natsconn.Settings{CA: missing}, "--tlsca"},
		{natsconn.Settings{Context: "absent"}, `natscli context "absent"`},
	} {
		_, _, err := c.s.Resolve(envMap(map[string]string{"HOME": t.TempDir()}))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.s, err, c.want)
		}
	}
}

// TestRefusedNamesTheViolation: a request the server's permissions deny
// only times out on the client; Refused adds what the server said.
func TestRefusedNamesTheViolation(t *testing.T) {
	t.Parallel()
	perms := &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"allowed.>"}}}
	_, url := natsconntest.Start(t, &server.Options{Users: []*server.User{{Username: "r", Password: "p", Permissions: perms}}})
	nc, err := connect(t, natsconn.Settings{URL: url, User: "r", Password: "p"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc.Opts.AsyncErrorCB = func(*nats.Conn, *nats.Subscription, error) {}
	_, err = nc.Request("segd.admin.v1.segment.upload", nil, 200e6)
	err = natsconn.Refused(nc, err)
	if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request: %v", err)
	}
	if !strings.Contains(err.Error(), `Permissions Violation for Publish to "segd.admin.v1.segment.upload"`) {
		t.Fatalf("the refusal is not named: %v", err)
	}
}
