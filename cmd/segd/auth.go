package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host"
)

func newAuthCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Users of the embedded NATS server (segd serve --auth FILE)"}
	var listen string
	var force bool
	initCmd := &cobra.Command{
		Use:   "init FILE",
		Short: "Write an auth file with a producer, a reader and an admin, each with a fresh random password",
		Long: `Write FILE (readable only by you) with one user per role — producer,
reader, admin — each with a fresh random password, and print how each
connects with natscli and the segd CLI. Start segd with it:

  segd serve --auth FILE --listen 0.0.0.0:4222

docs/security.md describes the roles and the file's format (a user may have
an nkey instead of a password).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			users, err := newAuthUsers()
			if err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(args[0], flags, 0o600)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists; it may hold secrets in use (--force overwrites it)", args[0])
			}
			if err != nil {
				return err
			}
			if err := writeAuthFile(f, users); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			printAuthUsage(cmd.OutOrStdout(), args[0], listen, users)
			return nil
		},
	}
	initCmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4222", "the address segd serve will listen on, for the printed lines")
	initCmd.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	cmd.AddCommand(initCmd)
	return cmd
}

// newAuthUsers makes one user per role, named after it, with a random
// 128-bit password in hex (no character a shell or a flag parser minds).
func newAuthUsers() ([]bus.User, error) {
	var users []bus.User
	for _, role := range []string{bus.RoleProducer, bus.RoleReader, bus.RoleAdmin} {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		users = append(users, bus.User{Name: role, Password: hex.EncodeToString(b), Role: role})
	}
	return users, nil
}

// writeAuthFile writes users in the documented format, with comments.
func writeAuthFile(w io.Writer, users []bus.User) error {
	var b strings.Builder
	b.WriteString(`# segd auth file: the users of segd's embedded NATS server
# (segd serve --auth FILE). Roles (docs/security.md):
#   producer  publishes events on segd.events.>
#   reader    queries (segd.v1.>), the change feed, exports
#   admin     what a reader may, plus uploads and previews (segd.admin.v1.>)
# A user has either a password (plain, or a bcrypt hash from
# "nats server passwd") or an nkey: its public key (U...), the client
# holding the seed. Each user receives replies on _INBOX.<user>.>.
users:
`)
	for _, u := range users {
		fmt.Fprintf(&b, "  - user: %s\n    password: %q\n    role: %s\n", u.Name, u.Password, u.Role)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printAuthUsage prints how to start segd with the file and how each role
// connects.
func printAuthUsage(w io.Writer, file, listen string, users []bus.User) {
	url := "nats://" + listen
	if host, port, err := net.SplitHostPort(listen); err == nil && (host == "0.0.0.0" || host == "::" || host == "") {
		url = "nats://" + net.JoinHostPort("HOST", port) // any interface: the clients need a real name
	}
	fmt.Fprintf(w, "wrote %s (%d users, readable only by you). Start segd with it:\n  segd serve --auth %s --listen %s\n",
		file, len(users), file, listen)
	for _, u := range users {
		cred := fmt.Sprintf("--user %s --password %s", u.Name, u.Password)
		segd := fmt.Sprintf("segd %%s --nats %s %s", url, cred)
		nats := fmt.Sprintf("nats --server %s %s --inbox-prefix %s", url, cred, bus.InboxPrefix(u.Name))
		var segdCmd, natsCmd string
		switch u.Role {
		case bus.RoleProducer:
			segdCmd, natsCmd = "demo", `pub segd.events.web '[{"user":"u42","event":"view"}]'`
		case bus.RoleReader:
			segdCmd, natsCmd = "segment ls", `req segd.v1.member.segments '{"user":"u42"}'`
		case bus.RoleAdmin:
			segdCmd, natsCmd = "segment upload beta_testers u42 u43", `req segd.admin.v1.segment.upload '{"segment":"beta_testers","users":["u42"],"mode":"append"}'`
		}
		fmt.Fprintf(w, "\n%s (%s):\n  "+segd+"\n  %s %s\n", u.Name, u.Role, segdCmd, nats, natsCmd)
		fmt.Fprintf(w, "  or save a natscli context, which segd reads too:\n    nats context save segd-%s --server %s %s --inbox-prefix %s\n    segd %s --context segd-%s\n",
			u.Name, url, cred, bus.InboxPrefix(u.Name), segdCmd, u.Name)
	}
}

// embeddedSecurity sets the embedded server's users, TLS and --insecure
// from serve's flags.
func embeddedSecurity(cfg *host.Config, authFile, cert, key, clientCA string) error {
	if cfg.NATSURL != "" {
		if authFile != "" || cert != "" || clientCA != "" {
			return errors.New("--auth and --tls-* configure the embedded server; with --nats the server's own configuration decides who may do what (docs/security.md)")
		}
		return nil
	}
	if authFile != "" {
		users, err := bus.ReadAuthFile(authFile)
		if err != nil {
			return err
		}
		cfg.Users = users
	}
	if (cert == "") != (key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if clientCA != "" && cert == "" {
		return errors.New("--tls-client-ca verifies clients of a TLS listener: give --tls-cert and --tls-key too")
	}
	if cert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: clientCA, Verify: clientCA != ""})
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key/--tls-client-ca: %w", err)
		}
		cfg.TLS, cfg.TLSVerify = tc, clientCA != ""
	}
	return nil
}
