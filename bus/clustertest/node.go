package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// runNode runs one cluster node in a child process until SIGTERM (graceful
// shutdown), SIGKILL, or the parent closing stdin (the test is gone: exit
// at once so no node outlives its test binary). It returns the exit code.
func runNode(raw string) int {
	var cfg nodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "clustertest node: bad config: %v\n", err)
		return 2
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       "127.0.0.1",
		Port:       cfg.Port,
		HTTPHost:   "127.0.0.1",
		HTTPPort:   cfg.HTTPPort,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		LogFile:    cfg.LogFile,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name: cfg.Cluster,
			Host: "127.0.0.1",
			Port: cfg.ClusterPort,
		},
	}
	for _, r := range cfg.Routes {
		u, err := url.Parse(r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "clustertest node: bad route %q: %v\n", r, err)
			return 2
		}
		opts.Routes = append(opts.Routes, u)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clustertest node: %v\n", err)
		return 2
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(60 * time.Second) {
		fmt.Fprintf(os.Stderr, "clustertest node %s: not accepting connections after 60s\n", cfg.Name)
		return 1
	}

	parentGone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(parentGone)
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	select {
	case <-term:
		ns.Shutdown()
		ns.WaitForShutdown()
		return 0
	case <-parentGone:
		return 0
	}
}
