package ingestbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// echoReady is the line the echo server prints once it serves.
const echoReady = "echo ready"

// ConnectEcho connects the echo service with the options segd connects
// with (host.Server.connect: a name, reconnecting forever), so that the
// baseline differs from segd only by what segd does.
func ConnectEcho(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.Name("segd-bench-echo"), nats.MaxReconnects(-1))
}

// ServeEcho adds the bare micro echo service, EchoSubject answering
// echoReply, on nc.
func ServeEcho(nc *nats.Conn) (micro.Service, error) {
	return micro.AddService(nc, micro.Config{Name: "bench_echo", Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{Subject: EchoSubject, Handler: micro.HandlerFunc(func(r micro.Request) {
			_ = r.Respond(echoReply)
		})}})
}

// RunEchoServer serves the echo on the server at url until ctx is done,
// after writing echoReady to ready. It is what `segd bench echo-server`
// runs: the echo in a process of its own, as segd is.
func RunEchoServer(ctx context.Context, url string, ready io.Writer) error {
	nc, err := ConnectEcho(url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	svc, err := ServeEcho(nc)
	if err != nil {
		return err
	}
	defer svc.Stop()
	if err := nc.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(ready, echoReady); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// EchoStarter is a Segd that runs the echo the way it runs segd: in a
// child process when segd is one, so that neither side of the comparison
// shares the measuring process.
type EchoStarter interface {
	StartEcho(ctx context.Context, url string) (stop func() error, err error)
}

// StartEcho runs `Path bench echo-server --nats URL` and waits until it
// serves. The child also exits when its stdin closes, so it does not
// outlive this process.
func (p Subprocess) StartEcho(ctx context.Context, url string) (func() error, error) {
	cmd := exec.Command(p.Path, "bench", "echo-server", "--nats", url)
	cmd.Env = append(os.Environ(), "NATS_CONTEXT=", "NATS_URL=")
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = stdin.Close()
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("the echo server did not stop within 30 s of SIGTERM; its log ends:\n%s", stderr.String())
		}
	}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case l, ok := <-line:
		if ok && strings.TrimSpace(l) == echoReady {
			return stop, nil
		}
		_ = stop()
		return nil, fmt.Errorf("the echo server printed %q, want %q; its log ends:\n%s", l, echoReady, stderr.String())
	case <-ctx.Done():
		_ = stop()
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		_ = stop()
		return nil, fmt.Errorf("the echo server was not ready within a minute; its log ends:\n%s", stderr.String())
	}
}
