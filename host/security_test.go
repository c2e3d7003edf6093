package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// securityDoc is the page whose configuration and role matrix the role
// test runs.
const securityDoc = "../docs/security.md"

// docBlock returns the fenced block or table that follows marker in
// docs/security.md.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	data, err := os.ReadFile(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- "+marker+" -->\n")
	if !ok {
		t.Fatalf("%s: no %q marker", securityDoc, marker)
	}
	if strings.HasPrefix(rest, "```") {
		_, rest, _ = strings.Cut(rest, "\n")
		block, _, ok := strings.Cut(rest, "```\n")
		if !ok {
			t.Fatalf("%s: the block after %q is not closed", securityDoc, marker)
		}
		return block
	}
	block, _, _ := strings.Cut(rest, "\n\n")
	return block
}

// roles are the columns of the matrix, in the order the test runs them:
// segd last, so that its forged upload, applied after every denied one
// would have been, shows when they all are.
var roles = []string{"anonymous", "producer", "reader", "admin", "segd"}

// docMatrix parses the role matrix of docs/security.md: action -> role ->
// allowed.
func docMatrix(t *testing.T) (actions []string, want map[string]map[string]bool) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(docBlock(t, "role-test: matrix")), "\n")
	cells := func(l string) []string {
		var out []string
		for _, c := range strings.Split(strings.Trim(l, "|"), "|") {
			out = append(out, strings.TrimSpace(c))
		}
		return out
	}
	if got := strings.Join(cells(lines[0])[1:], ","); got != strings.Join(roles, ",") {
		t.Fatalf("matrix columns %s, want %s", got, strings.Join(roles, ","))
	}
	want = map[string]map[string]bool{}
	for _, l := range lines[2:] {
		c := cells(l)
		if len(c) != len(roles)+1 {
			t.Fatalf("matrix row %q: %d cells", l, len(c))
		}
		want[c[0]] = map[string]bool{}
		for i, r := range roles {
			if c[i+1] != "yes" && c[i+1] != "no" {
				t.Fatalf("matrix row %q: %q is neither yes nor no", l, c[i+1])
			}
			want[c[0]][r] = c[i+1] == "yes"
		}
		actions = append(actions, c[0])
	}
	return actions, want
}

// roleEnv is a nats-server started with the documented configuration, and
// segd running against it with its own credentials.
type roleEnv struct {
	t        *testing.T
	url      string
	password map[string]string
	cfg      Config
	srv      *Server
	segdJS   jetstream.JetStream
	// embedded: segd's own embedded server with Config.Users, whose
	// "segd" identity connects in-process only.
	embedded bool
}

func startRoleEnv(t *testing.T) *roleEnv {
	t.Helper()
	e := &roleEnv{t: t, password: map[string]string{}}
	for role, env := range map[string]string{"segd": "SEGD_PASSWORD", "producer": "SEGD_PRODUCER_PASSWORD",
		"reader": "SEGD_READER_PASSWORD", "admin": "SEGD_ADMIN_PASSWORD"} {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		e.password[role] = hex.EncodeToString(b)
		t.Setenv(env, e.password[role])
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(docBlock(t, "role-test: nats-server.conf")), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the configuration of %s: %v", securityDoc, err)
	}
	// Only where it listens and stores.
	opts.Host, opts.Port, opts.StoreDir = "127.0.0.1", -1, filepath.Join(dir, "js")
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	e.url = ns.ClientURL()

	rulesFile := writeRoleRules(t, dir)
	e.cfg = Config{DataDir: filepath.Join(dir, "segd"), NATSURL: e.url, RulePaths: []string{rulesFile},
		NATSOptions: []nats.Option{nats.UserInfo("segd", e.password["segd"]), nats.CustomInboxPrefix("_INBOX.segd")},
		NoSnapshots: true, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.startSegd()
	return e
}

// writeRoleRules writes the role test's rules: a segment that events
// change, and static segments for uploads.
func writeRoleRules(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "rules.yaml")
	rules := `
segments:
  - id: buyers
    did: {event: buy, last: 7d}
  - id: beta
    static: true
  - id: uploads
    static: true
  - id: forged
    static: true
`
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startEmbeddedRoleEnv runs segd with its embedded server and a user per
// role (segd serve --auth FILE).
func startEmbeddedRoleEnv(t *testing.T) *roleEnv {
	t.Helper()
	e := &roleEnv{t: t, password: map[string]string{}, embedded: true}
	var users []bus.User
	for _, role := range []string{bus.RoleProducer, bus.RoleReader, bus.RoleAdmin} {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		e.password[role] = hex.EncodeToString(b)
		users = append(users, bus.User{Name: role, Password: e.password[role], Role: role})
	}
	dir := t.TempDir()
	e.cfg = Config{DataDir: filepath.Join(dir, "segd"), Listen: "127.0.0.1:0", Users: users, RulePaths: []string{writeRoleRules(t, dir)},
		NoSnapshots: true, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.startSegd()
	e.url = e.srv.ClientURL()
	return e
}

// startSegd starts segd with its documented credentials.
func (e *roleEnv) startSegd() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Start(ctx, e.cfg)
	if err != nil {
		e.t.Fatalf("segd with its documented credentials: %v", err)
	}
	e.t.Cleanup(func() { _ = srv.Close() })
	e.srv, e.segdJS = srv, srv.JetStream()
}

// checkSegdConn fails the test if segd's own connection met a permission
// violation: its documented permissions must cover all it does.
func (e *roleEnv) checkSegdConn() {
	e.t.Helper()
	if err := e.srv.Conn().Flush(); err != nil {
		e.t.Fatal(err)
	}
	if le := e.srv.Conn().LastError(); le != nil {
		e.t.Errorf("segd's own connection: %v", le)
	}
}

// connect connects as role ("anonymous": without credentials); perm
// receives the permission violations the server reports.
func (e *roleEnv) connect(role string, perm chan<- error) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("role-test-" + role), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case perm <- err:
				default:
				}
			}
		})}
	if e.embedded && role == bus.RoleService {
		return e.srv.embedded.Connect(opts...)
	}
	if role != "anonymous" {
		opts = append(opts, nats.UserInfo(role, e.password[role]), nats.CustomInboxPrefix("_INBOX."+role))
	}
	return nats.Connect(e.url, opts...)
}

func isPermissionError(err error) bool {
	return errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrAuthorization) ||
		strings.Contains(strings.ToLower(err.Error()), "permissions violation")
}

// roleAction is one row of the matrix: it returns nil when the action
// worked, and what it got otherwise.
type roleAction func(ctx context.Context, role string, nc *nats.Conn, js jetstream.JetStream) error

// try runs act as role on a connection of its own and reports whether the
// server allowed it; an outcome that is neither (a timeout, a wrong
// answer) fails the test.
func (e *roleEnv) try(role, name string, act roleAction) (allowed bool, detail string) {
	perm := make(chan error, 1)
	nc, err := e.connect(role, perm)
	if err != nil {
		if isPermissionError(err) {
			return false, "cannot connect: " + err.Error()
		}
		e.t.Fatalf("%s as %s: connect: %v", name, role, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- act(ctx, role, nc, js) }()
	select {
	case err = <-done:
	case err = <-perm:
		cancel()
		<-done
	}
	if err == nil {
		// A violation the action's client swallowed still counts.
		if ferr := nc.Flush(); ferr != nil {
			err = ferr
		} else if le := nc.LastError(); le != nil && isPermissionError(le) {
			err = le
		} else {
			return true, ""
		}
	}
	if isPermissionError(err) {
		return false, err.Error()
	}
	e.t.Errorf("%s as %s: neither allowed nor denied: %v", name, role, err)
	return false, "error: " + err.Error()
}

// TestRolesOnDocumentedConfig starts a nats-server with the configuration
// docs/security.md gives operators, runs segd against it with its own
// credentials, and checks every cell of the doc's role matrix: each
// allowed action works, each denied one is refused by the server and
// leaves no trace.
func TestRolesOnDocumentedConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and segd")
	}
	// An export of 70,000 ids is over the 1 MiB max payload: it goes
	// through the Object Store, in chunks read with flow control.
	runRoleMatrix(t, startRoleEnv(t), 70000)
}

// TestRolesOnEmbeddedAuth runs the same matrix against segd's embedded
// server with a user per role (segd serve --auth): its roles are the
// documented ones. segd's own identity there connects in-process only,
// and may also publish events (for serve --demo).
func TestRolesOnEmbeddedAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts segd")
	}
	// The default 1 MiB max payload: an export of 70,000 ids goes through
	// the Object Store.
	runRoleMatrix(t, startEmbeddedRoleEnv(t), 70000)
}

// runRoleMatrix checks every cell of the doc's role matrix on e.
func runRoleMatrix(t *testing.T, e *roleEnv, betaSize int) {
	actions, want := docMatrix(t)
	if e.embedded {
		want["publish events on segd.events.>"][bus.RoleService] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// An admin fills a static segment too large for one reply, so that its
	// export goes through the Object Store.
	anc, err := e.connect("admin", make(chan error, 1))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer anc.Close()
	admin := client.New(anc, client.WithTimeout(30*time.Second))
	beta := make([]string, betaSize)
	for i := range beta {
		beta[i] = fmt.Sprintf("beta-user-%05d", i)
	}
	if _, err := admin.Upload(ctx, "beta", beta, api.UploadReplace); err != nil {
		t.Fatalf("admin upload: %v", err)
	}

	// A producer's message that is not a batch: segd dead-letters it
	// (segd.dlq.>, which only segd may publish on).
	pnc, err := e.connect("producer", make(chan error, 1))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer pnc.Close()
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pjs.Publish(ctx, "segd.events.roletest", []byte("not a batch")); err != nil {
		t.Fatalf("producer: %v", err)
	}

	run := roleActions(e, len(beta))
	got := map[string]map[string]bool{}
	var matrix strings.Builder
	fmt.Fprintf(&matrix, "\n%-48s", "action")
	for _, r := range roles {
		fmt.Fprintf(&matrix, " %-9s", r)
	}
	for _, a := range actions {
		act, ok := run[a]
		if !ok {
			t.Fatalf("the matrix of %s has action %q, which the test does not know", securityDoc, a)
		}
		got[a] = map[string]bool{}
		fmt.Fprintf(&matrix, "\n%-48s", a)
		for _, r := range roles {
			start := time.Now()
			ok, detail := e.try(r, a, act)
			if d := time.Since(start); d > time.Second {
				t.Logf("%s as %s took %s", a, r, d)
			}
			got[a][r] = ok
			cell := "denied"
			if ok {
				cell = "allowed"
			}
			fmt.Fprintf(&matrix, " %-9s", cell)
			if ok != want[a][r] {
				t.Errorf("%s as %s: allowed=%v, the doc says %v (%s)", a, r, ok, want[a][r], detail)
			}
		}
	}
	t.Log("role matrix as run on " + map[bool]string{false: "the documented nats-server configuration", true: "the embedded server with --auth"}[e.embedded] + ":" + matrix.String())

	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.checkNoTrace(ctx, t, admin, got)
	st, err := admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 1 {
		t.Errorf("dead letters %d, want the producer's 1", st.DeadLetters)
	}

	if e.embedded {
		return
	}
	// A restart takes other paths (resuming the change feed from its last
	// message, resetting the durable consumer): segd's permissions cover
	// them too.
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	e.startSegd()
	waitMember(ctx, t, admin, "buyer-producer", "buyers")
	e.checkSegdConn()
}

// checkNoTrace checks that the denied actions changed nothing, and the
// allowed ones did what they said.
func (e *roleEnv) checkNoTrace(ctx context.Context, t *testing.T, admin *client.Client, got map[string]map[string]bool) {
	t.Helper()
	e.checkSegdConn()
	if _, err := e.segdJS.Stream(ctx, bus.EventsStream); err != nil {
		t.Errorf("SEGD_EVENTS after the delete attempts: %v", err)
	}
	changes, err := e.segdJS.Stream(ctx, api.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := changes.Info(ctx, jetstream.WithSubjectFilter(api.ChangesSubjectPrefix+">"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		stored := info.State.Subjects[api.ChangesSubjectPrefix+"forged-"+r] > 0
		if stored != got["publish on segd.changes.>"][r] {
			t.Errorf("a change forged by %s stored=%v", r, stored)
		}
	}
	// Uploads go through the events stream in order: once the last one
	// (segd's forged one, when allowed) is applied, every earlier is.
	waitMember(ctx, t, admin, "by-segd", "forged")
	for _, r := range roles {
		for seg, action := range map[string]string{"forged": "forge an upload on segd.control.>", "uploads": "upload on segd.admin.v1.>"} {
			user := map[string]string{"forged": "by-", "uploads": "up-"}[seg] + r
			ok, err := admin.IsMember(ctx, user, seg)
			if err != nil {
				t.Fatal(err)
			}
			if ok != got[action][r] {
				t.Errorf("%s in %s = %v, but %q as %s was allowed=%v", user, seg, ok, action, r, got[action][r])
			}
		}
	}
}

// waitMember waits until user is in seg, polling with a deadline.
func waitMember(ctx context.Context, t *testing.T, c *client.Client, user, seg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := c.IsMember(ctx, user, seg)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never in %s: %v", user, seg, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
