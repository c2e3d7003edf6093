// Package clustertest runs a JetStream cluster of real nats-servers on
// loopback for tests: each node is a child process (the test binary
// re-executed), so a test can SIGKILL a node, freeze it with SIGSTOP (a
// node cut off from the network, as seen from everyone else), stop it
// gracefully or restart it on the same ports and store.
//
// Nodes are processes and not goroutines because an in-process
// server.Shutdown is always graceful: it hands its raft leaderships over
// before it goes, which hides exactly the failures multi-host code must
// survive.
//
// A test package that uses it must route its TestMain through Main:
//
//	func TestMain(m *testing.M) { clustertest.Main(m) }
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// nodeEnv carries a child's nodeConfig; its presence makes Main run a node.
const nodeEnv = "SEGD_CLUSTERTEST_NODE"

// Main runs the package's tests, or, in a child started by Start, one
// cluster node until it is killed or its parent goes away.
func Main(m *testing.M) {
	if cfg := os.Getenv(nodeEnv); cfg != "" {
		os.Exit(runNode(cfg))
	}
	os.Exit(m.Run())
}

// Options configures Start. The zero value gives 3 nodes.
type Options struct {
	// Nodes is the cluster size (default 3; at least 1).
	Nodes int
	// ReadyTimeout bounds each wait for the cluster to be ready (default 60s:
	// nodes start slowly on a loaded machine under -race).
	ReadyTimeout time.Duration
}

// Cluster is a running JetStream cluster. Its methods are safe for
// concurrent use; a failing step fails the test it was started with.
type Cluster struct {
	t       testing.TB
	name    string
	timeout time.Duration

	mu    sync.Mutex
	nodes []*node
}

// node is one member: its fixed ports and store survive restarts.
type node struct {
	cfg     nodeConfig
	cmd     *exec.Cmd
	stdin   io.WriteCloser // closing it tells the child its parent is gone
	exited  chan struct{}
	running bool
	paused  bool
}

// nodeConfig is what a child needs to run one node.
type nodeConfig struct {
	Name        string   `json:"name"`
	Cluster     string   `json:"cluster"`
	Port        int      `json:"port"`
	ClusterPort int      `json:"cluster_port"`
	HTTPPort    int      `json:"http_port"`
	StoreDir    string   `json:"store_dir"`
	Routes      []string `json:"routes"`
	LogFile     string   `json:"log_file"`
}

// Start starts a cluster, waits until it has a JetStream meta leader and
// every node answers JetStream requests, and stops it when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	dir := t.TempDir()
	c := &Cluster{t: t, name: "segdtest", timeout: opts.ReadyTimeout}
	ports := freePorts(t, 3*opts.Nodes)
	var routes []string
	for i := 0; i < opts.Nodes; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1]))
	}
	for i := 0; i < opts.Nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		c.nodes = append(c.nodes, &node{cfg: nodeConfig{
			Name:        name,
			Cluster:     c.name,
			Port:        ports[3*i],
			ClusterPort: ports[3*i+1],
			HTTPPort:    ports[3*i+2],
			StoreDir:    filepath.Join(dir, name),
			Routes:      routes,
			LogFile:     filepath.Join(dir, name+".log"),
		}})
	}
	t.Cleanup(c.shutdown)
	for i := range c.nodes {
		c.start(i)
	}
	c.WaitReady()
	return c
}

// freePorts reserves n distinct loopback ports by listening on port 0. The
// listeners are closed before the nodes bind them; the window in which
// another process could take one is the usual price of fixed ports, which
// a restarted node needs so that clients and routes find it again.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("clustertest: reserve a port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Size is the number of nodes, running or not.
func (c *Cluster) Size() int { return len(c.nodes) }

// URLs lists every node's client URL, running or not, in node order.
func (c *Cluster) URLs() []string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.cfg.Port))
	}
	return urls
}

// URL is URLs joined by commas, as nats.Connect takes it.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// NodeURL is node i's client URL alone.
func (c *Cluster) NodeURL(i int) string { return c.URLs()[i] }

// Name is node i's server name (as in stream and KV cluster info).
func (c *Cluster) Name(i int) string { return c.nodes[i].cfg.Name }

// Index is the node number of a server name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.nodes {
		if n.cfg.Name == name {
			return i
		}
	}
	return -1
}

// Connect connects to the cluster through every node's URL, retrying
// forever on disconnects (a test kills nodes on purpose), and closes the
// connection when the test ends. It pings every 500ms, so a client on a
// frozen node (Pause) moves to another within about 1.5s; the client
// default of 2 minutes would leave it cut off for the whole test.
func (c *Cluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return c.connect(t, c.URL(), opts...)
}

// ConnectNode connects to node i only (it ignores the other nodes the
// server tells it of), so a test can cut a client off by killing or
// freezing that node.
func (c *Cluster) ConnectNode(t testing.TB, i int, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return c.connect(t, c.NodeURL(i), append([]nats.Option{nats.IgnoreDiscoveredServers()}, opts...)...)
}

func (c *Cluster) connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	base := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.PingInterval(500 * time.Millisecond),
		nats.MaxPingsOutstanding(2),
		nats.NoCallbacksAfterClientClose(),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		t.Fatalf("clustertest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// start launches node i's process (it must not be running).
func (c *Cluster) start(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.running {
		c.t.Fatalf("clustertest: node %d already running", i)
	}
	cfg, err := json.Marshal(n.cfg)
	if err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(cfg))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("clustertest: start node %d: %v", i, err)
	}
	n.cmd, n.stdin, n.running, n.paused = cmd, stdin, true, false
	n.exited = make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(n.exited)
}

// Kill SIGKILLs node i and waits until its process is gone: no goodbye to
// its peers, no leadership handed over, nothing flushed.
func (c *Cluster) Kill(i int) { c.signalStop(i, syscall.SIGKILL) }

// Stop stops node i gracefully (SIGTERM: it hands over its raft leaderships
// and flushes) and waits until its process is gone.
func (c *Cluster) Stop(i int) { c.signalStop(i, syscall.SIGTERM) }

func (c *Cluster) signalStop(i int, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[i]
	if !n.running {
		c.mu.Unlock()
		c.t.Fatalf("clustertest: node %d is not running", i)
	}
	if n.paused && sig != syscall.SIGKILL {
		n.cmd.Process.Signal(syscall.SIGCONT)
	}
	n.cmd.Process.Signal(sig)
	n.stdin.Close()
	exited := n.exited
	c.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(c.timeout):
		n.cmd.Process.Kill()
		<-exited
		c.t.Errorf("clustertest: node %d did not exit on %v within %s", i, sig, c.timeout)
	}
	c.mu.Lock()
	n.running, n.paused = false, false
	c.mu.Unlock()
}

// Pause freezes node i (SIGSTOP): its sockets stay open but it answers
// nothing, as a node cut off by a network partition looks to the others.
func (c *Cluster) Pause(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if !n.running || n.paused {
		c.t.Fatalf("clustertest: node %d is not running or already paused", i)
	}
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatalf("clustertest: pause node %d: %v", i, err)
	}
	// The signal is delivered asynchronously: a thread still running
	// could answer a request sent right after (TestPausedNodeIsCutOff saw
	// "a frozen node answered" under load). Pause returns once every
	// thread is stopped.
	if err := waitStopped(n.cmd.Process.Pid, 10*time.Second); err != nil {
		c.t.Fatalf("clustertest: pause node %d: %v", i, err)
	}
	n.paused = true
}

// waitStopped waits until every thread of process pid is stopped (state
// T in /proc/<pid>/task/<tid>/stat), polling within the bound.
func waitStopped(pid int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		stopped, err := allThreadsStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped within %s", pid, within)
		}
		time.Sleep(time.Millisecond) // polling /proc, bounded above
	}
}

// allThreadsStopped reports whether every thread of pid is in state T.
func allThreadsStopped(pid int) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name in parentheses, which may
		// hold spaces: read it after the last ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) {
			return false, fmt.Errorf("%s/%s/stat: unexpected %q", dir, task.Name(), stat)
		}
		if st := stat[i+2]; st != 'T' && st != 't' {
			return false, nil
		}
	}
	return true, nil
}

// Resume thaws a paused node (SIGCONT).
func (c *Cluster) Resume(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if !n.paused {
		c.t.Fatalf("clustertest: node %d is not paused", i)
	}
	if err := n.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		c.t.Fatalf("clustertest: resume node %d: %v", i, err)
	}
	n.paused = false
}

// Restart starts a stopped or killed node again on its ports and store,
// and waits until the whole cluster is ready again.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.start(i)
	c.WaitReady()
}

// WaitReady waits until every running node answers JetStream account
// requests, which needs a meta leader that the node knows. It fails the
// test after the ready timeout, naming the nodes that are not ready.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	if err := c.waitReady(c.timeout); err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
}

func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c.mu.Lock()
	var idx []int
	for i, n := range c.nodes {
		if n.running && !n.paused {
			idx = append(idx, i)
		}
	}
	c.mu.Unlock()
	for _, i := range idx {
		var last error
		for {
			if last = c.nodeReady(i, time.Until(deadline)); last == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %d (%s) not ready after %s: %v; its log: %s", i, c.nodes[i].cfg.Name, timeout, last, c.nodes[i].cfg.LogFile)
			}
			select {
			case <-c.nodes[i].exited:
				return fmt.Errorf("node %d (%s) exited; its log: %s", i, c.nodes[i].cfg.Name, c.nodes[i].cfg.LogFile)
			case <-time.After(50 * time.Millisecond): // poll interval, not a synchronization
			}
		}
	}
	return nil
}

// nodeReady asks node i directly for JetStream account info.
func (c *Cluster) nodeReady(i int, left time.Duration) error {
	if left <= 0 {
		left = time.Millisecond
	}
	nc, err := nats.Connect(c.NodeURL(i), nats.Timeout(left), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(left, 2*time.Second))
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// MetaLeader returns the node number of the JetStream meta leader as node
// i sees it (from its monitoring endpoint /jsz), or -1 if it knows none or
// does not answer.
func (c *Cluster) MetaLeader(i int) int {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", c.nodes[i].cfg.HTTPPort))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var r struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Meta == nil {
		return -1
	}
	return c.Index(r.Meta.Leader)
}

// StreamLeader returns the node number leading a stream (a KV bucket's
// stream is KV_<bucket>, an object store's OBJ_<bucket>), or -1 if it has
// none or does not answer within 2s (a request to a stream without a
// leader is dropped, not refused).
func (c *Cluster) StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return -1
	}
	return c.Index(info.Cluster.Leader)
}

// shutdown kills every node still running (the test is over: no need to
// be graceful) and waits for the processes. If the test failed it logs the
// end of each node's log first.
func (c *Cluster) shutdown() {
	if c.t.Failed() {
		for i, n := range c.nodes {
			b, _ := os.ReadFile(n.cfg.LogFile)
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				// A killed node's peers retry its route many times a second.
				if !strings.Contains(l, "Error trying to connect to route") {
					lines = append(lines, l)
				}
			}
			c.t.Logf("node %d (%s) log, last %d lines:\n%s", i, n.cfg.Name, min(len(lines), 40), strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
	c.mu.Lock()
	var exits []chan struct{}
	for _, n := range c.nodes {
		if n.running {
			n.cmd.Process.Kill()
			n.stdin.Close()
			exits = append(exits, n.exited)
			n.running = false
		}
	}
	c.mu.Unlock()
	for _, e := range exits {
		<-e
	}
}
