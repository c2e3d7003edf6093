package ingestbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/segd/segd/bus/api"
)

// CatchUp is one timed segd catch-up.
type CatchUp struct {
	Took    time.Duration
	PeakRSS uint64
	// CPU is segd's CPU time (user and system) until it caught up; 0 when
	// not measured (segd in this process). On a loaded machine it varies
	// less than Took.
	CPU time.Duration
	// Status is segd's status when it reached the last sequence.
	Status *api.StatusReply
}

// RunCatchUp starts segd from an empty data dir under dir with the rule
// file rulesFile, and times it from the start until its status shows the
// pre-published stream's last sequence applied.
func (e *Env) RunCatchUp(ctx context.Context, segd Segd, rulesFile, dir string) (CatchUp, error) {
	last := e.Published.LastSeq
	if err := e.Reset(ctx); err != nil {
		return CatchUp{}, err
	}
	dataDir, err := os.MkdirTemp(dir, "segd-data-")
	if err != nil {
		return CatchUp{}, err
	}
	defer os.RemoveAll(dataDir)
	t0 := time.Now()
	proc, err := segd.Start(ctx, SegdOptions{NATSURL: e.URL, DataDir: dataDir, RulesFile: rulesFile})
	if err != nil {
		return CatchUp{}, err
	}
	st, err := e.waitApplied(ctx, proc, last)
	took := time.Since(t0)
	var cpu time.Duration
	if cr, ok := proc.(cpuReporter); ok && err == nil {
		cpu, _ = cr.CPU() // a figure beside the time; none is no failure
	}
	rss, stopErr := proc.Stop()
	if err != nil {
		if stopErr != nil {
			err = fmt.Errorf("%w; %v", err, stopErr)
		}
		return CatchUp{}, err
	}
	if stopErr != nil {
		return CatchUp{}, stopErr
	}
	return CatchUp{Took: took, PeakRSS: rss, CPU: cpu, Status: st}, nil
}

// pollEvery is how often the harness asks segd's status while the end is
// far: rarely enough to cost segd nothing measurable. Past nearEnd of the
// sequences it asks every pollNearEnd, so that the measured time is
// quantized to 5 ms, not 50 (two 100-rule runs once both read exactly
// 15.602 s: 312 ticks of 50 ms).
const (
	pollEvery   = 50 * time.Millisecond
	pollNearEnd = 5 * time.Millisecond
	nearEnd     = 0.9
)

// pollInterval is the wait before the next status request, given the last
// applied sequence (0: unknown) and the one waited for.
func pollInterval(applied, seq uint64) time.Duration {
	if seq > 0 && float64(applied) >= nearEnd*float64(seq) {
		return pollNearEnd
	}
	return pollEvery
}

// waitApplied polls segd's status until its last applied sequence reaches
// seq, segd exits, or ctx ends.
func (e *Env) waitApplied(ctx context.Context, proc SegdProc, seq uint64) (*api.StatusReply, error) {
	tick := time.NewTimer(pollEvery)
	defer tick.Stop()
	var lastErr error
	for {
		asked := time.Now()
		st, err := Status(ctx, e.nc, time.Second)
		if err == nil && st.LastSeq >= seq {
			return st, nil
		}
		wait := pollEvery
		if err != nil {
			lastErr = err // not serving yet
		} else {
			wait = pollInterval(st.LastSeq, seq)
		}
		tick.Reset(max(0, wait-time.Since(asked)))
		select {
		case <-proc.Exited():
			return nil, fmt.Errorf("segd exited before applying sequence %d", seq)
		case <-ctx.Done():
			if st != nil {
				return nil, fmt.Errorf("segd applied %d of %d sequences: %w", st.LastSeq, seq, ctx.Err())
			}
			return nil, fmt.Errorf("segd did not answer its status (%v): %w", lastErr, ctx.Err())
		case <-tick.C:
		}
	}
}

// WriteRules writes RulesYAML(n, probe) under dir and returns its path.
func WriteRules(dir string, n int, probe bool) (string, error) {
	name := fmt.Sprintf("rules-%d.yaml", n)
	if probe {
		name = fmt.Sprintf("rules-%d-probe.yaml", n)
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(RulesYAML(n, probe)), 0o644)
}
