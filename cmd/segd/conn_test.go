package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/segd/segd/bus/natsconn"
	"github.com/segd/segd/bus/natsconn/natsconntest"
)

// TestSecuredNATS runs `segd serve --nats URL` against real nats-servers
// that require a password, an nkey, a JWT credentials file, TLS and mutual
// TLS, each with its flags, and the CLI with the same flags; without them
// the CLI is refused and says why.
func TestSecuredNATS(t *testing.T) {
	t.Parallel()
	pki := natsconntest.NewPKI(t)
	nk := natsconntest.NewNKeyUser(t)
	op := natsconntest.NewOperator(t)
	cases := []struct {
		name    string
		server  func(*server.Options)
		flags   []string
		missing string // in the refusal without the flags
	}{
		{"password", func(o *server.Options) { o.Users = []*server.User{{Username: "segd", Password: "s3cret"}} },
			[]string{"--user", "segd", "--password", "s3cret"}, "--user/--password"},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: nk.Public}} },
			[]string{"--nkey", nk.SeedFile}, "--nkey"},
		{"creds", func(o *server.Options) { op.Configure(t, o) },
			[]string{"--creds", op.Creds}, "--creds"},
		{"tls", func(o *server.Options) { o.TLSConfig, o.TLS = pki.ServerTLS(t, false), true },
			[]string{"--tlsca", pki.CA}, "certificate"},
		{"mtls", func(o *server.Options) { o.TLSConfig, o.TLS, o.TLSVerify = pki.ServerTLS(t, true), true, true },
			[]string{"--tlsca", pki.CA, "--tlscert", pki.ClientCert, "--tlskey", pki.ClientKey}, "tls"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			opts := &server.Options{}
			c.server(opts)
			_, url := natsconntest.Start(t, opts)
			if c.name == "creds" {
				op.Warm(t, url)
			}

			// segd serve --nats URL <flags>, until the test ends.
			dir := t.TempDir()
			rulesFile := filepath.Join(dir, "rules.yaml")
			if err := os.WriteFile(rulesFile, []byte("segments:\n  - id: buyers\n    did: {event: pay, last: 7d}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			serve := newRootCommand()
			serve.SetOut(io.Discard)
			serve.SetArgs(append([]string{"serve", "--nats", url, "--data-dir", filepath.Join(dir, "data"), "--rules", rulesFile,
				"--no-snapshots", "--log-level", "error"}, c.flags...))
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- serve.ExecuteContext(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-served; err != nil {
					t.Errorf("segd serve: %v", err)
				}
			})

			// The CLI with the same flags reaches it once it serves.
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, err := runSegd(t, append([]string{"segment", "ls", "--nats", url, "--timeout", "1s"}, c.flags...)...)
				if err == nil && strings.Contains(out, "buyers") {
					break
				}
				select {
				case err := <-served:
					served <- nil // the cleanup waits for it
					t.Fatalf("segd serve %v: %v", c.flags, err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("segment ls %v: %v\n%s", c.flags, err, out)
				}
				time.Sleep(20 * time.Millisecond) // polling interval, not synchronization
			}
			_, err := runSegd(t, "segment", "ls", "--nats", url, "--timeout", "2s")
			if err == nil || !strings.Contains(err.Error(), c.missing) {
				t.Fatalf("segment ls without %v: %v, want a refusal naming %s", c.flags, err, c.missing)
			}
		})
	}
}

// TestServeCredentialsNeedNATS: credential flags without --nats are a
// mistake (the embedded server takes --auth), said before anything starts.
func TestServeCredentialsNeedNATS(t *testing.T) {
	t.Setenv(natsconn.EnvURL, "")
	t.Setenv(natsconn.EnvContext, "")
	_, err := runSegd(t, "serve", "--data-dir", t.TempDir(), "--user", "segd", "--password", "x")
	if err == nil || !strings.Contains(err.Error(), "--auth") {
		t.Fatalf("serve --user without --nats: %v", err)
	}
}
