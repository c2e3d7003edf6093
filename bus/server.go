package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedOptions configures StartEmbedded. Only DataDir needs setting: the
// defaults give a server on 127.0.0.1:4222, reachable from this machine only.
type EmbeddedOptions struct {
	// DataDir is segd's data directory; JetStream stores under DataDir/nats.
	DataDir string
	// Host is the interface to listen on (default 127.0.0.1: segd exposes
	// nothing to the network unless asked to).
	Host string
	// Port is the client port: 0 means 4222, -1 picks a free port.
	Port int
	// NoListen turns the TCP listener off. In-process connections made by
	// Connect still work, and startup is several times faster.
	NoListen bool
	// SyncAlways makes JetStream fsync every write. The default fsyncs every
	// two minutes: the log survives a process crash but not a power loss.
	SyncAlways bool
	// MaxPayload caps the size of a message (default and usual 1 MiB).
	MaxPayload int32
	// ServerName names the server in logs and monitoring (default "segd").
	ServerName string
	// Logger receives the server's log lines (nil discards them). Debug and
	// trace lines are sent only when Debug is set.
	Logger *slog.Logger
	// Debug enables the server's debug log lines.
	Debug bool
	// ReadyTimeout bounds the wait for the server to accept connections and
	// enable JetStream (default 10s).
	ReadyTimeout time.Duration

	// Users, when set, requires every client to authenticate as one of
	// them, with its role's permissions (docs/security.md); segd's own
	// in-process connections (Connect) get a user of their own.
	Users []User
	// TLS, when set, serves network clients over TLS only; TLSVerify also
	// requires client certificates signed by TLS.ClientCAs (mutual TLS).
	TLS       *tls.Config
	TLSVerify bool
	// Insecure allows a listener on a non-loopback address without Users,
	// which StartEmbedded otherwise refuses.
	Insecure bool

	// skipProbe lets tests exercise nats-server's own listen failure.
	skipProbe bool
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	ns  *server.Server
	dir string
	// self authenticates segd's in-process connections when Users is set.
	self []nats.Option

	once sync.Once
}

// ErrAddrInUse reports that the embedded server's port is taken. The error
// returned by StartEmbedded wraps it and says what to do instead.
var ErrAddrInUse = errors.New("address already in use")

// StartEmbedded starts a nats-server with JetStream in this process and
// waits until it accepts connections and JetStream is enabled. It never
// exits the process: fatal server errors (a taken port, an unusable store
// directory) are returned as errors.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = 4222
	}
	if opts.ServerName == "" {
		opts.ServerName = "segd"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	storeDir := filepath.Join(opts.DataDir, "nats")
	if !opts.NoListen && len(opts.Users) == 0 && !opts.Insecure && !isLoopback(opts.Host) {
		return nil, insecureListenError(opts.Host, opts.Port)
	}

	// Probe the port first: nats-server reports a taken port only through
	// its logger and then waits out the whole readiness timeout, which
	// would leave the user staring at a silent hang.
	if !opts.NoListen && opts.Port > 0 && !opts.skipProbe {
		if err := probeListen(opts.Host, opts.Port); err != nil {
			return nil, err
		}
	}

	sopts := &server.Options{
		ServerName: opts.ServerName,
		Host:       opts.Host,
		Port:       opts.Port,
		DontListen: opts.NoListen,
		JetStream:  true,
		StoreDir:   storeDir,
		SyncAlways: opts.SyncAlways,
		MaxPayload: opts.MaxPayload,
		// NoSigs: the host owns signal handling; nats-server's handler
		// would call os.Exit on SIGINT.
		NoSigs: true,
		NoLog:  opts.Logger == nil,
		Debug:  opts.Debug,
	}
	var self []nats.Option
	if len(opts.Users) > 0 {
		var err error
		if self, err = applyAuth(sopts, opts.Users); err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
	}
	if opts.TLS != nil {
		sopts.TLSConfig, sopts.TLS, sopts.TLSVerify = opts.TLS, true, opts.TLSVerify
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	// Always install our logger, even when logs are discarded: a
	// server.Logger's Fatalf is how nats-server reports startup failures,
	// and the default one would exit the process.
	lg := &serverLogger{log: opts.Logger, fatal: make(chan string, 1)}
	ns.SetLoggerV2(lg, opts.Debug, false, false)
	go ns.Start()

	deadline := time.Now().Add(opts.ReadyTimeout)
	for {
		select {
		case msg := <-lg.fatal:
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, startError(opts, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, fmt.Errorf("embedded NATS: not ready after %s", opts.ReadyTimeout)
		}
		// Short slices so that a fatal error is noticed quickly.
		if ns.ReadyForConnections(50*time.Millisecond) && ns.JetStreamEnabled() {
			break
		}
	}
	return &Embedded{ns: ns, dir: storeDir, self: self}, nil
}

func probeListen(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return listenError(host, port, err, errors.Is(err, syscall.EADDRINUSE))
	}
	return l.Close()
}

// listenError says what to do about a port the server cannot have.
func listenError(host string, port int, cause error, inUse bool) error {
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	next := net.JoinHostPort(host, strconv.Itoa(port+1))
	if !inUse {
		return fmt.Errorf("embedded NATS: cannot listen on %s: %w; pick another address with --listen %s, or use an existing server with --nats nats://HOST:PORT", hp, cause, next)
	}
	return &addrInUseError{
		msg: fmt.Sprintf("embedded NATS: %s is already in use; stop the other server, pick another port with --listen %s, or use it with --nats nats://%s",
			hp, next, hp),
		cause: cause,
	}
}

// addrInUseError keeps the message short while still wrapping both
// ErrAddrInUse and the system error.
type addrInUseError struct {
	msg   string
	cause error
}

func (e *addrInUseError) Error() string   { return e.msg }
func (e *addrInUseError) Unwrap() []error { return []error{ErrAddrInUse, e.cause} }

// startError turns a fatal log line from nats-server into an error.
func startError(opts EmbeddedOptions, msg string) error {
	// The probe closes the port before the server binds it, so another
	// process may still win the race; nats-server then reports it here.
	if opts.Port > 0 && strings.Contains(msg, "Error listening on port") {
		return listenError(opts.Host, opts.Port, errors.New(msg), strings.Contains(strings.ToLower(msg), "address already in use"))
	}
	return fmt.Errorf("embedded NATS: %s", msg)
}

// ClientURL is the URL other processes (natscli, producers) connect to. It
// is empty when the server does not listen.
func (e *Embedded) ClientURL() string {
	if e.ns.Addr() == nil {
		return ""
	}
	return e.ns.ClientURL()
}

// Server returns the underlying nats-server, for monitoring and tests.
func (e *Embedded) Server() *server.Server { return e.ns }

// StoreDir is the JetStream store directory.
func (e *Embedded) StoreDir() string { return e.dir }

// Connect opens an in-process connection, which needs no listener and skips
// the TCP stack. Options are applied after the in-process one.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := append(append([]nats.Option{nats.InProcessServer(e.ns), nats.Name("segd")}, e.self...), opts...)
	nc, err := nats.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: connect: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has stopped, so that the
// JetStream store is flushed and closed when it returns. It is safe to call
// more than once.
func (e *Embedded) Shutdown() {
	e.once.Do(func() {
		e.ns.Shutdown()
		e.ns.WaitForShutdown()
	})
}

// serverLogger adapts nats-server's Logger to slog, and turns Fatalf into a
// reported error instead of an exit.
type serverLogger struct {
	log   *slog.Logger
	fatal chan string
}

func (l *serverLogger) emit(level slog.Level, format string, v []any) {
	if l.log != nil {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats-server")
	}
}

func (l *serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug-4, format, v) }

// Fatalf records the first fatal error for StartEmbedded; it must not exit.
func (l *serverLogger) Fatalf(format string, v ...any) {
	l.emit(slog.LevelError, format, v)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
