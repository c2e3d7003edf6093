package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host"
)

// errStartStub stops serve where it would start segd, once the test has
// the configuration the flags made.
var errStartStub = errors.New("start stub")

// serveConfig runs `segd serve ARGS` up to the start of segd and returns
// the configuration its flags made, or the error the flags got.
func serveConfig(t *testing.T, args ...string) (host.Config, error) {
	t.Helper()
	var got host.Config
	cmd := newServeCommandWith(func(_ context.Context, cfg host.Config) (*host.Server, error) {
		got = cfg
		return nil, errStartStub
	})
	cmd.SetArgs(append([]string{"--data-dir", t.TempDir(), "--no-listen"}, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if errors.Is(err, errStartStub) {
		return got, nil
	}
	return got, err
}

// TestServeMaxAttempts: --max-attempts sets how many times the consumer
// tries a message before it goes to the dead letters (default 10); out of
// 1 to 100 it is refused with an error naming the flag and its limit.
func TestServeMaxAttempts(t *testing.T) {
	t.Parallel()
	cfg, err := serveConfig(t)
	if err != nil || cfg.MaxAttempts != bus.DefaultMaxAttempts {
		t.Fatalf("default: max attempts %d, %v; want %d", cfg.MaxAttempts, err, bus.DefaultMaxAttempts)
	}
	for _, n := range []string{"1", "3", "100"} {
		cfg, err := serveConfig(t, "--max-attempts", n)
		if err != nil || strconv.Itoa(cfg.MaxAttempts) != n {
			t.Errorf("--max-attempts %s: config has %d, %v", n, cfg.MaxAttempts, err)
		}
	}
	for _, n := range []string{"0", "-1", "101"} {
		_, err := serveConfig(t, "--max-attempts", n)
		if err == nil || !strings.Contains(err.Error(), "--max-attempts") || !strings.Contains(err.Error(), "1 to 100") {
			t.Errorf("--max-attempts %s: %v; want an error naming the flag and its limit", n, err)
		}
	}
}
