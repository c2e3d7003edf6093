package bus

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTestServer starts an embedded server on a random port in a fresh
// directory and shuts it down when the test ends.
func startTestServer(t testing.TB) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func TestEmbeddedStartsWithJetStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("ClientURL = %q", e.ClientURL())
	}
	if e.StoreDir() != filepath.Join(dir, "nats") {
		t.Errorf("StoreDir = %q", e.StoreDir())
	}
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !e.Server().JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}
	e.Shutdown()
	e.Shutdown() // idempotent
}

func TestEmbeddedNoListen(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if u := e.ClientURL(); u != "" {
		t.Errorf("ClientURL = %q, want empty without a listener", u)
	}
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatalf("JetStream over an in-process connection: %v", err)
	}
}

// takenPort occupies a port for the duration of the test.
func takenPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func TestEmbeddedPortInUse(t *testing.T) {
	t.Parallel()
	port := takenPort(t)
	for _, skipProbe := range []bool{false, true} {
		start := time.Now()
		_, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Port: port, skipProbe: skipProbe})
		if err == nil {
			t.Fatal("started on a taken port")
		}
		if !errors.Is(err, ErrAddrInUse) {
			t.Errorf("skipProbe=%v: error does not wrap ErrAddrInUse: %v", skipProbe, err)
		}
		for _, want := range []string{"is already in use", "--listen 127.0.0.1:", "--nats nats://127.0.0.1:"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("skipProbe=%v: error %q lacks %q", skipProbe, err, want)
			}
		}
		// nats-server's own failure path must be reported, not waited out
		// (the readiness timeout is 10s) and not exit the process.
		t.Logf("skipProbe=%v: %v", skipProbe, err)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("skipProbe=%v: took %s to fail", skipProbe, d)
		}
	}
}

func TestEmbeddedUnusableStoreDir(t *testing.T) {
	t.Parallel()
	// DataDir is a file, so DataDir/nats cannot be created: JetStream
	// fails inside nats-server, which must surface as an error.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := StartEmbedded(EmbeddedOptions{DataDir: f, NoListen: true, ReadyTimeout: 5 * time.Second})
	if err == nil {
		t.Fatal("started with an unusable store directory")
	}
	t.Log(err)
}
