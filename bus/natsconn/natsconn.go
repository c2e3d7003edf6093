// Package natsconn turns the connection settings natscli users know —
// flags, NATS_* environment variables and natscli contexts — into a NATS
// URL and nats.Options, for `segd serve --nats` and every CLI command. It
// only builds options: connecting stays with the caller.
package natsconn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
)

// Settings are where and how to connect. Empty fields are unset: Resolve
// fills them from the environment, then from the context.
type Settings struct {
	URL      string
	User     string
	Password string
	// Token authenticates with a token (natscli contexts may carry one).
	Token string
	// Creds is a JWT credentials file (nsc, Synadia Cloud).
	Creds string
	// NKey is a file holding an nkey seed (SU...).
	NKey string
	// Cert and Key are a client certificate for mutual TLS; CA verifies the
	// server's certificate.
	Cert, Key, CA string
	// Context names a natscli context (~/.config/nats/context/NAME.json), or
	// is the path of such a file.
	Context string
	// InboxPrefix replaces _INBOX for replies: with per-user inboxes
	// (docs/security.md) each user may subscribe only to its own. Unset,
	// it is _INBOX.<User> for a user name.
	InboxPrefix string
}

// The environment variables Resolve reads, natscli's names.
const (
	EnvURL         = "NATS_URL"
	EnvUser        = "NATS_USER"
	EnvPassword    = "NATS_PASSWORD"
	EnvCreds       = "NATS_CREDS"
	EnvNKey        = "NATS_NKEY"
	EnvCert        = "NATS_CERT"
	EnvKey         = "NATS_KEY"
	EnvCA          = "NATS_CA"
	EnvContext     = "NATS_CONTEXT"
	EnvInboxPrefix = "NATS_INBOX_PREFIX"
)

// AddFlags registers --user, --password, --creds, --nkey, --tlscert,
// --tlskey, --tlsca, --context and --inbox-prefix on fs (the URL flag is
// the caller's: its name and default differ between serve and the CLI).
func AddFlags(fs *pflag.FlagSet, s *Settings) {
	fs.StringVar(&s.User, "user", "", "NATS user name (env "+EnvUser+")")
	fs.StringVar(&s.Password, "password", "", "NATS password (env "+EnvPassword+")")
	fs.StringVar(&s.Creds, "creds", "", "NATS credentials file (env "+EnvCreds+")")
	fs.StringVar(&s.NKey, "nkey", "", "file with an nkey seed (env "+EnvNKey+")")
	fs.StringVar(&s.Cert, "tlscert", "", "client certificate for mutual TLS (env "+EnvCert+")")
	fs.StringVar(&s.Key, "tlskey", "", "client certificate's private key (env "+EnvKey+")")
	fs.StringVar(&s.CA, "tlsca", "", "CA certificate to verify the server with (env "+EnvCA+")")
	fs.StringVar(&s.Context, "context", "", "natscli context name or file (env "+EnvContext+")")
	fs.StringVar(&s.InboxPrefix, "inbox-prefix", "", "subject prefix for replies, e.g. _INBOX.reader (env "+EnvInboxPrefix+"; docs/security.md)")
}

// Context is a natscli context file, the fields segd uses. natscli writes
// more (jetstream_domain, nsc, ...), which segd ignores.
type Context struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	Token       string `json:"token"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
}

// Getenv reads an environment variable; os.Getenv in production, a map
// in tests.
type Getenv func(string) string

// Resolve fills the unset fields from the environment and then from the
// context (flags win over the environment, which wins over the context, as
// in natscli), and returns the URL (empty if none is set anywhere) and the
// options that authenticate and secure the connection.
func (s Settings) Resolve(getenv Getenv) (string, []nats.Option, error) {
	env := func(v *string, name string) {
		if *v == "" {
			*v = getenv(name)
		}
	}
	env(&s.URL, EnvURL)
	env(&s.User, EnvUser)
	env(&s.Password, EnvPassword)
	env(&s.Creds, EnvCreds)
	env(&s.NKey, EnvNKey)
	env(&s.Cert, EnvCert)
	env(&s.Key, EnvKey)
	env(&s.CA, EnvCA)
	env(&s.Context, EnvContext)
	env(&s.InboxPrefix, EnvInboxPrefix)
	if s.Context != "" {
		ctx, err := LoadContext(s.Context, getenv)
		if err != nil {
			return "", nil, err
		}
		home := getenv("HOME")
		for _, f := range []struct {
			dst  *string
			src  string
			path bool
		}{
			{&s.URL, ctx.URL, false}, {&s.Token, ctx.Token, false}, {&s.User, ctx.User, false},
			{&s.Password, ctx.Password, false}, {&s.Creds, ctx.Creds, true}, {&s.NKey, ctx.NKey, true},
			{&s.Cert, ctx.Cert, true}, {&s.Key, ctx.Key, true}, {&s.CA, ctx.CA, true},
			{&s.InboxPrefix, ctx.InboxPrefix, false},
		} {
			if *f.dst == "" {
				*f.dst = f.src
				if f.path {
					*f.dst = expandHome(f.src, home)
				}
			}
		}
	}
	if s.InboxPrefix == "" && s.User != "" && !strings.ContainsAny(s.User, " \t.*>") {
		// segd's convention (docs/security.md): each user's replies come
		// to _INBOX.<user>, which servers without it allow anyway.
		s.InboxPrefix = "_INBOX." + s.User
	}
	opts, err := s.options()
	return s.URL, opts, err
}

// options builds the nats.Options of resolved settings, refusing
// combinations that would silently drop a credential.
func (s Settings) options() ([]nats.Option, error) {
	var opts []nats.Option
	kinds := 0
	if s.User != "" || s.Password != "" {
		if s.User == "" || s.Password == "" {
			return nil, errors.New("NATS credentials: --user and --password go together")
		}
		opts = append(opts, nats.UserInfo(s.User, s.Password))
		kinds++
	}
	if s.Token != "" {
		opts = append(opts, nats.Token(s.Token))
		kinds++
	}
	if s.Creds != "" {
		if err := readable(s.Creds, "--creds"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(s.Creds))
		kinds++
	}
	if s.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(s.NKey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", s.NKey, err)
		}
		opts = append(opts, o)
		kinds++
	}
	if kinds > 1 {
		return nil, errors.New("NATS credentials: give one of --user/--password, --creds, --nkey (or a context's token)")
	}
	if (s.Cert == "") != (s.Key == "") {
		return nil, errors.New("TLS: --tlscert and --tlskey go together")
	}
	if s.Cert != "" {
		for _, f := range []struct{ path, flag string }{{s.Cert, "--tlscert"}, {s.Key, "--tlskey"}} {
			if err := readable(f.path, f.flag); err != nil {
				return nil, err
			}
		}
		opts = append(opts, nats.ClientCert(s.Cert, s.Key))
	}
	if s.CA != "" {
		if err := readable(s.CA, "--tlsca"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(s.CA))
	}
	if s.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(s.InboxPrefix))
	}
	return opts, nil
}

// readable checks a file up front, so that a wrong path is reported as
// such rather than as a failed handshake.
func readable(path, flag string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return f.Close()
}

// LoadContext reads a natscli context: name is a context name, looked up
// in $XDG_CONFIG_HOME/nats/context (default ~/.config/nats/context), or a
// path to a .json file.
func LoadContext(name string, getenv Getenv) (*Context, error) {
	path := name
	if !strings.HasSuffix(name, ".json") && !strings.ContainsRune(name, filepath.Separator) {
		dir := getenv("XDG_CONFIG_HOME")
		if dir == "" {
			dir = filepath.Join(getenv("HOME"), ".config")
		}
		path = filepath.Join(dir, "nats", "context", name+".json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natscli context %q: %w", name, err)
	}
	var c Context
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("natscli context %q (%s): %w", name, path, err)
	}
	return &c, nil
}

func expandHome(path, home string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok && home != "" {
		return filepath.Join(home, rest)
	}
	return path
}

// Explain adds to a connection error what to check: an authorization
// failure names the credential options.
func Explain(url string, err error) error {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return fmt.Errorf("connect to %s: %w (give credentials with --user/--password, --creds, --nkey or --context, or the NATS_* variables; docs/security.md)", url, err)
	}
	return fmt.Errorf("connect to %s: %w", url, err)
}

// Refused adds to a failed request the permission violation the server
// reported on nc meanwhile, if any: without it a denied request only
// looks like a timeout.
func Refused(nc *nats.Conn, err error) error {
	if err == nil || nc == nil {
		return err
	}
	if le := nc.LastError(); le != nil && errors.Is(le, nats.ErrPermissionViolation) {
		return fmt.Errorf("%w (the NATS server refused: %v; the roles are in docs/security.md)", err, le)
	}
	return err
}
