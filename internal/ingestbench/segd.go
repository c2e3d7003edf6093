package ingestbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segd/segd/host"
)

// SegdOptions is what a measured segd is started with.
type SegdOptions struct {
	NATSURL   string
	DataDir   string
	RulesFile string
}

// Segd starts the segd being measured.
type Segd interface {
	Start(ctx context.Context, o SegdOptions) (SegdProc, error)
	// MeasuresRSS says whether Stop reports this segd's own peak RSS.
	MeasuresRSS() bool
}

// SegdProc is a running segd.
type SegdProc interface {
	// Exited is closed if segd stopped by itself.
	Exited() <-chan struct{}
	// Stop stops segd and returns its peak resident set (bytes; 0 when
	// not measured).
	Stop() (peakRSS uint64, err error)
}

// Subprocess runs `Path serve --nats URL ...` in a fresh process per run,
// so that each run's peak RSS (VmHWM) is its own.
type Subprocess struct {
	Path string
}

// MeasuresRSS is true: the child's /proc/PID/status is read before it stops.
func (Subprocess) MeasuresRSS() bool { return true }

// Start starts segd serve with snapshots off (a catch-up from an empty data
// dir writes none either).
func (p Subprocess) Start(ctx context.Context, o SegdOptions) (SegdProc, error) {
	cmd := exec.Command(p.Path, "serve", "--nats", o.NATSURL, "--data-dir", o.DataDir, "--rules", o.RulesFile,
		"--no-snapshots", "--log-level", "warn", "--tz", "UTC")
	cmd.Env = append(os.Environ(), "NATS_CONTEXT=", "NATS_URL=")
	proc := &subproc{cmd: cmd, exited: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = proc.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		proc.err = cmd.Wait()
		close(proc.exited)
	}()
	return proc, nil
}

type subproc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	stderr *tailBuffer
}

func (p *subproc) Exited() <-chan struct{} { return p.exited }

func (p *subproc) Stop() (uint64, error) {
	select {
	case <-p.exited:
		return 0, fmt.Errorf("segd exited: %v; its log ends:\n%s", p.err, p.stderr.String())
	default:
	}
	rss, rssErr := PeakRSS(p.cmd.Process.Pid)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return rss, fmt.Errorf("segd did not stop within a minute of SIGTERM; its log ends:\n%s", p.stderr.String())
	}
	if p.err != nil {
		return rss, fmt.Errorf("segd: %v; its log ends:\n%s", p.err, p.stderr.String())
	}
	return rss, rssErr
}

// CPU returns the CPU time (user and system) segd has used so far.
func (p *subproc) CPU() (time.Duration, error) { return CPUTime(p.cmd.Process.Pid) }

// CPUTime reads a process's CPU time so far, user and system (Linux,
// /proc/PID/stat, in clock ticks of 1/100 s).
func CPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("no ')' in /proc/PID/stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat has %d fields after the name", len(f))
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/PID/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// cpuReporter is a SegdProc that can tell its own CPU time.
type cpuReporter interface {
	CPU() (time.Duration, error)
}

// PeakRSS reads a process's peak resident set size (VmHWM, Linux) in bytes.
func PeakRSS(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = bytes.Clone(b.buf[over:])
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// InProcess runs segd with host.Start in this process: no per-run RSS, but
// no binary needed (tests, go test -bench).
type InProcess struct {
	// Snapshots turns snapshots on (only on demand, through the process's
	// Snapshot, and at Stop), for measuring reads during one.
	Snapshots bool
}

// MeasuresRSS is false: the process's peak covers every run.
func (InProcess) MeasuresRSS() bool { return false }

// Start starts segd in this process, snapshots off.
func (p InProcess) Start(ctx context.Context, o SegdOptions) (SegdProc, error) {
	srv, err := host.Start(ctx, host.Config{NATSURL: o.NATSURL, DataDir: o.DataDir, RulePaths: []string{o.RulesFile},
		NoSnapshots: !p.Snapshots, SnapshotInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	return &inproc{srv: srv}, nil
}

type inproc struct{ srv *host.Server }

func (*inproc) Exited() <-chan struct{} { return nil }

func (p *inproc) Stop() (uint64, error) { return 0, p.srv.Close() }

// Snapshotter is a SegdProc that can be told to write a snapshot.
type Snapshotter interface {
	Snapshot(ctx context.Context) error
}

// Snapshot writes a snapshot of the in-process segd.
func (p *inproc) Snapshot(ctx context.Context) error {
	_, err := p.srv.Snapshot(ctx)
	return err
}
