package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/segd/segd/bus/natsconn"
)

// addConnFlags registers --nats and the credential and TLS flags of
// natsconn on fs, into s.
func addConnFlags(fs *pflag.FlagSet, s *natsconn.Settings) {
	fs.StringVar(&s.URL, "nats", "", "NATS server of the running segd (env "+natsconn.EnvURL+", or the context's; default "+nats.DefaultURL+")")
	natsconn.AddFlags(fs, s)
}

// connectCLI connects a client command: the flags, then the NATS_*
// environment, then a natscli context say where and as whom.
func connectCLI(s natsconn.Settings, name string) (*nats.Conn, error) {
	url, opts, err := s.Resolve(os.Getenv)
	if err != nil {
		return nil, err
	}
	if url == "" {
		url = nats.DefaultURL
	}
	// Permission violations are reported with the request they failed
	// (natsconn.Refused); other asynchronous errors are printed, as
	// nats.go's default handler does.
	quiet := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			fmt.Fprintln(os.Stderr, "nats:", err)
		}
	})
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), quiet}, opts...)...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) {
			return nil, natsconn.Explain(url, err)
		}
		return nil, fmt.Errorf("connect to %s: %w (is segd serve running? --nats sets the address)", url, err)
	}
	return nc, nil
}

// connect connects for a client command.
func (f *clientFlags) connect(name string) (*nats.Conn, error) { return connectCLI(f.conn, name) }

// connFlagsSet reports whether a credential or TLS flag of a NATS client
// connection was given on the command line.
func connFlagsSet(cmd *cobra.Command) bool {
	for _, name := range []string{"user", "password", "creds", "nkey", "tlscert", "tlskey", "tlsca", "context", "inbox-prefix"} {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// embeddedAuthFlags are serve's flags for securing the embedded server.
type embeddedAuthFlags struct {
	file, cert, key, clientCA string
}
