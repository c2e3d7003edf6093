package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/natsconn/natsconntest"
)

// syncBuffer is a bytes.Buffer safe to read while serve writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveUntilCleanup runs `segd serve args...` until the test ends and
// returns the NATS URL its welcome message prints.
func serveUntilCleanup(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("segments:\n  - id: buyers\n    did: {event: view, last: 7d}\n  - id: beta_testers\n    static: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetArgs(append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--rules", rulesFile, "--no-snapshots",
		"--log-level", "error", "--listen", "127.0.0.1:0"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("segd serve: %v", err)
		}
	})
	urlRe := regexp.MustCompile(`NATS: ((?:nats|tls)://[0-9.:]+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := urlRe.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-served:
			served <- nil // the cleanup waits for it
			t.Fatalf("segd serve %v: %v", args, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("segd serve printed no URL:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronization
	}
}

// TestAuthInitAndServe: `segd auth init` writes a private file with a
// user per role, `segd serve --auth FILE` admits exactly them with their
// roles, and the lines auth init prints for the segd CLI work as printed.
func TestAuthInitAndServe(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auth.yaml")
	// A free port for the printed lines: serve listens where init said.
	probe := serveUntilCleanupPort(t)
	printed, err := runSegd(t, "auth", "init", file, "--listen", probe)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("auth file mode: %v %v", st.Mode(), err)
	}
	users, err := bus.ReadAuthFile(file)
	if err != nil || len(users) != 3 {
		t.Fatalf("the written file: %v %+v", err, users)
	}
	for _, u := range users {
		if u.Name != u.Role || len(u.Password) < 32 || !strings.Contains(printed, u.Password) {
			t.Errorf("user %+v: want one per role with a printed 128-bit password", u)
		}
	}
	if _, err := runSegd(t, "auth", "init", file); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a second init over the file: %v", err)
	}

	url := serveUntilCleanup(t, "--auth", file, "--listen", probe)
	if url != "nats://"+probe {
		t.Fatalf("serve at %s, auth init printed lines for %s", url, probe)
	}
	// Every segd line auth init printed, as printed (the demo made short).
	for _, line := range regexp.MustCompile(`(?m)^  segd (.*)$`).FindAllStringSubmatch(printed, -1) {
		args := strings.Fields(line[1])
		if args[0] == "serve" {
			continue
		}
		if args[0] == "demo" {
			args = append(args, "--users", "5", "--days", "1")
		}
		if out, err := runSegd(t, args...); err != nil {
			t.Errorf("segd %s: %v\n%s", line[1], err, out)
		}
	}
	pw := map[string]string{}
	for _, u := range users {
		pw[u.Name] = u.Password
	}
	if _, err := runSegd(t, "segment", "ls", "--nats", url, "--timeout", "2s"); err == nil || !strings.Contains(err.Error(), "--user/--password") {
		t.Errorf("anonymous: %v, want a refusal naming the credential flags", err)
	}
	_, err = runSegd(t, "segment", "ls", "--nats", url, "--user", "producer", "--password", pw["producer"], "--timeout", "1s")
	if err == nil || !strings.Contains(err.Error(), `Permissions Violation for Publish to "segd.v1.segment.list"`) {
		t.Errorf("producer segment ls: %v, want the violation named", err)
	}
	_, err = runSegd(t, "segment", "upload", "beta_testers", "u9", "--nats", url, "--user", "reader", "--password", pw["reader"], "--timeout", "1s")
	if err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Errorf("reader upload: %v, want a permissions violation", err)
	}
}

// serveUntilCleanupPort returns a loopback address with a port that was
// free a moment ago, for a server that must listen where a printed line
// says.
func serveUntilCleanupPort(t *testing.T) string {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(e.ClientURL(), "nats://")
	e.Shutdown()
	return addr
}

// TestServeRefusesOpenListen: segd serve on every interface without
// --auth does not start, and says how to add it.
func TestServeRefusesOpenListen(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("NATS_CONTEXT", "")
	_, err := runSegd(t, "serve", "--data-dir", t.TempDir(), "--listen", "0.0.0.0:0", "--rules", "../../examples/rules")
	if err == nil || !strings.Contains(err.Error(), "--auth FILE") || !strings.Contains(err.Error(), "segd auth init") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("serve --listen 0.0.0.0 without --auth: %v", err)
	}
}

// TestServeEmbeddedTLS: with --tls-cert/--tls-key/--tls-client-ca the
// embedded listener takes only clients with a certificate the CA signed
// (and the credentials of --auth); segd's own in-process connection needs
// neither.
func TestServeEmbeddedTLS(t *testing.T) {
	pki := natsconntest.NewPKI(t)
	file := filepath.Join(t.TempDir(), "auth.yaml")
	if _, err := runSegd(t, "auth", "init", file); err != nil {
		t.Fatal(err)
	}
	users, err := bus.ReadAuthFile(file)
	if err != nil {
		t.Fatal(err)
	}
	reader := users[1]
	url := serveUntilCleanup(t, "--auth", file, "--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey, "--tls-client-ca", pki.CA)
	creds := []string{"--nats", url, "--user", reader.Name, "--password", reader.Password, "--timeout", "2s"}
	if out, err := runSegd(t, append([]string{"segment", "ls", "--tlsca", pki.CA, "--tlscert", pki.ClientCert, "--tlskey", pki.ClientKey}, creds...)...); err != nil || !strings.Contains(out, "buyers") {
		t.Fatalf("reader over mutual TLS: %v\n%s", err, out)
	}
	if _, err := runSegd(t, append([]string{"segment", "ls", "--tlsca", pki.CA}, creds...)...); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if _, err := runSegd(t, append([]string{"segment", "ls"}, creds...)...); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("a client that does not know the CA: %v", err)
	}
}
