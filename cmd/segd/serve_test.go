package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// segdBin is the segd binary, built once for the tests that run it as a
// separate process (signals and pipes are process-wide).
var segdBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if segdBin.dir != "" {
		os.RemoveAll(segdBin.dir)
	}
	os.Exit(code)
}

func segdBinary(t *testing.T) string {
	t.Helper()
	segdBin.once.Do(func() {
		if segdBin.dir, segdBin.err = os.MkdirTemp("", "segd-bin-"); segdBin.err != nil {
			return
		}
		segdBin.path = filepath.Join(segdBin.dir, "segd")
		out, err := exec.Command("go", "build", "-o", segdBin.path, ".").CombinedOutput()
		if err != nil {
			segdBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if segdBin.err != nil {
		t.Fatal(segdBin.err)
	}
	return segdBin.path
}

// segdProcess is `segd serve` running as a child process, its stdout and
// stderr on one pipe (as with `segd serve 2>&1 | tee log`).
type segdProcess struct {
	cmd  *exec.Cmd
	out  *os.File // the pipe's read end
	done chan struct{}
	err  error // Wait's, once done is closed
}

// startSegdProcess starts segd serve on dataDir and reads its output until
// it says it is up. A watchdog kills it if it is not up in a minute.
func startSegdProcess(t *testing.T, dataDir string) *segdProcess {
	t.Helper()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("segments:\n  - id: buyers\n    did: {event: pay, last: 7d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &segdProcess{out: r, done: make(chan struct{})}
	p.cmd = exec.Command(segdBinary(t), "serve", "--data-dir", dataDir, "--no-listen", "--rules", rulesFile)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		r.Close()
	})
	watchdog := time.AfterFunc(time.Minute, func() { p.cmd.Process.Kill() })
	defer watchdog.Stop()
	sc := bufio.NewScanner(r)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), "Ctrl-C stops segd") {
			return p
		}
	}
	t.Fatalf("segd serve did not come up; its output:\n%s", strings.Join(seen, "\n"))
	return nil
}

// wait waits for the process to exit, with a deadline.
func (p *segdProcess) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(time.Minute):
		t.Fatal("segd did not exit within a minute")
		return nil
	}
}

// TestServeShutdownWithClosedPipe is `segd serve 2>&1 | tee log` and
// Ctrl-C: tee is gone when segd logs that it is stopping. segd must still
// shut down cleanly: exit 0 with a snapshot written.
func TestServeShutdownWithClosedPipe(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startSegdProcess(t, dataDir)
	p.out.Close() // the reader is gone: every write to stdout or stderr fails with EPIPE
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("segd exited with %v (%s), want exit 0", err, p.cmd.ProcessState)
	}
	snaps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "snapshot-*.segd"))
	if len(snaps) == 0 {
		t.Fatal("no shutdown snapshot in the data dir")
	}
}

// TestServeHangup: the terminal segd runs in closes (SIGHUP). segd stops as
// on Ctrl-C, with a snapshot, instead of dying without one.
func TestServeHangup(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startSegdProcess(t, dataDir)
	p.out.Close() // a closed terminal: nobody reads any more
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("segd exited with %v (%s), want exit 0", err, p.cmd.ProcessState)
	}
	snaps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "snapshot-*.segd"))
	if len(snaps) == 0 {
		t.Fatal("no shutdown snapshot in the data dir")
	}
}

// TestServeDataDirInUse starts a second segd process on a data dir that one
// uses: it must refuse, naming the first.
func TestServeDataDirInUse(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	first := startSegdProcess(t, dataDir)
	go io.Copy(io.Discard, first.out)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, segdBinary(t), "serve", "--data-dir", dataDir, "--no-listen", "--rules",
		filepath.Join(t.TempDir(), "never-read.yaml")).CombinedOutput()
	if err == nil {
		t.Fatalf("a second segd started on a data dir in use:\n%s", out)
	}
	for _, want := range []string{"in use", "pid " + strconv.Itoa(first.cmd.Process.Pid), filepath.Join(dataDir, "segd.lock")} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second segd's output does not say %q:\n%s", want, out)
		}
	}
	if err := first.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := first.wait(t); err != nil {
		t.Fatalf("first segd exited with %v", err)
	}
}
