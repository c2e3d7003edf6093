package host

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/client"
)

// readmeServe is a `segd serve` line of the README's "Two hosts".
var readmeServe = regexp.MustCompile(`^segd serve --nats (\S+) --host-id (\S+) --data-dir (\S+)$`)

// TestReadmeTwoHosts runs the README's two `segd serve` commands (the NATS
// URL and data dirs moved to the test's, from the repository's root as a
// reader would) against one JetStream server and checks what the README
// says: the first owns the stream, the second logs that it stands by with
// the owner's name, and when the owner stops (SIGTERM, as Ctrl-C) the
// standby takes over at once, well within the lease.
func TestReadmeTwoHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs segd as processes")
	}
	t.Parallel()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "### Two hosts\n")
	if !ok {
		t.Fatal(`README.md has no "### Two hosts"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var cmds [][]string
	for _, line := range strings.Split(section, "\n") {
		if m := readmeServe.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			cmds = append(cmds, m[1:])
		}
	}
	if len(cmds) != 2 || cmds[0][0] != cmds[1][0] || cmds[0][1] == cmds[1][1] || cmds[0][2] == cmds[1][2] {
		t.Fatalf("README's two hosts: want two `segd serve --nats URL --host-id ID --data-dir DIR` on one URL with their own ids and dirs, got %q", cmds)
	}
	dir := t.TempDir()
	bin := buildSegdWith(t, dir, false)
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: filepath.Join(dir, "nats"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	url := ns.ClientURL()
	fleet := newSegdFleet(t, bin, dir)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	run := func(c []string) *segdProcess {
		p := fleet.startIn(root, c[1], "--nats", url, "--host-id", c[1], "--data-dir", filepath.Join(dir, c[2]))
		return p
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := client.New(nc)
	a := run(cmds[0])
	waitOwner(t, c, cmds[0][1], time.Minute)
	b := run(cmds[1])
	waitProcLog(t, b, "standby: another host owns the stream", time.Minute)
	if !strings.Contains(b.output(), "owner="+cmds[0][1]) {
		t.Fatalf("the standby does not name the owner %s:\n%s", cmds[0][1], b.output())
	}
	stopped := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.wait(); err != nil {
		t.Fatalf("%s after SIGTERM: %v\n%s", cmds[0][1], err, a.output())
	}
	waitOwner(t, c, cmds[1][1], time.Minute)
	if took := time.Since(stopped); took > 10*time.Second {
		t.Fatalf("the standby took %v to take over from a host that stopped; the README says at once (the default lease is 10s)", took)
	}
}
