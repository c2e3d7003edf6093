package ingestbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// IngestConfig configures RunIngest.
type IngestConfig struct {
	Stream StreamConfig
	// Runs is how many times each figure is measured; the report gives
	// medians (default 3).
	Runs int
	// RuleSets are the rule counts timed (default RuleSets: 1, 6, 100).
	RuleSets []int
	Segd     Segd
	// Dir holds the embedded server's store, rule files and data dirs
	// (default a new temporary directory, removed at the end).
	Dir string
	// NATSURL, if set, is a scratch NATS server to use instead of an
	// embedded one.
	NATSURL string
	// Timeout bounds each run (default 10 minutes).
	Timeout time.Duration
	// Freshness, when its Rates are set, also runs RunFreshness.
	Freshness FreshnessConfig
	// Progress receives a line per run (nil: none).
	Progress io.Writer
	// CPUProfile, if set, is a file name prefix: each segd catch-up run
	// writes a CPU profile of this process to PREFIX-<rules>rules-run<k>.pprof.
	// It profiles segd only when segd runs in this process (InProcess).
	CPUProfile string
}

// IngestReport is RunIngest's result.
type IngestReport struct {
	Machine   string    `json:"machine"`
	Published Published `json:"published"`
	Runs      int       `json:"runs"`
	// AckRate and JSONRate are the baselines' medians, events/s.
	AckRate  float64 `json:"ack_events_per_s"`
	JSONRate float64 `json:"json_events_per_s"`
	Rows     []Row   `json:"rows"`
	// RSSMeasured is false when segd ran in the harness's process.
	RSSMeasured bool        `json:"rss_measured"`
	Freshness   []Freshness `json:"freshness,omitempty"`
	FreshRules  int         `json:"freshness_rules,omitempty"`
}

// Row is one rule set's catch-up.
type Row struct {
	Rules int `json:"rules"`
	// Rate is the median catch-up rate, events/s; Rates every run's.
	Rate  float64   `json:"events_per_s"`
	Rates []float64 `json:"runs_events_per_s"`
	// Ratios are each run's rate over the encoding/json baseline run just
	// before it; Ratio is their median.
	Ratio  float64   `json:"ratio_to_json"`
	Ratios []float64 `json:"runs_ratio_to_json"`
	// PeakRSS is the median of the runs' peak RSS, bytes.
	PeakRSS uint64 `json:"peak_rss_bytes"`
	// Applied is the events segd's status counted (the stream's events,
	// unless some were invalid); Invalid the items it skipped.
	Applied uint64 `json:"applied_events"`
	Invalid uint64 `json:"invalid_items"`
}

// RunIngest publishes the stream and measures, in each of cfg.Runs rounds,
// the read-and-ack baseline, then for each rule set the encoding/json
// baseline and segd's catch-up right after it (interleaved, so that a noisy
// neighbour weighs on all alike), then the freshness run.
func RunIngest(ctx context.Context, cfg IngestConfig) (*IngestReport, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if len(cfg.RuleSets) == 0 {
		cfg.RuleSets = RuleSets
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Segd == nil {
		cfg.Segd = InProcess{}
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "segd-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	env, err := NewEnv(ctx, cfg.NATSURL, cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	g := NewGenerator(cfg.Stream)
	sc := g.Config()
	fmt.Fprintf(progress, "publishing %d events of %d users in batches of %d over %d days...\n", sc.Events, sc.Users, sc.BatchSize, sc.Days)
	pub, err := env.Publish(ctx, g)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "published %d batches (%.0f MB) to sequence %d in %s\n", pub.Messages, float64(pub.Bytes)/1e6, pub.LastSeq, pub.Took.Round(time.Millisecond))
	rep := &IngestReport{Machine: Machine(), Published: pub, Runs: cfg.Runs, RSSMeasured: cfg.Segd.MeasuresRSS()}
	rate := func(d time.Duration) float64 { return float64(pub.Events) / d.Seconds() }
	var ack, js []float64
	rows := make([]Row, len(cfg.RuleSets))
	rss := make([][]uint64, len(cfg.RuleSets))
	files := make([]string, len(cfg.RuleSets))
	for i, n := range cfg.RuleSets {
		rows[i].Rules = n
		if files[i], err = WriteRules(cfg.Dir, n, false); err != nil {
			return nil, err
		}
	}
	// Each segd run is paired with an encoding/json baseline run just
	// before it, and its ratio taken to that one: on a shared machine the
	// load changes from minute to minute, and a ratio of medians taken
	// minutes apart would carry it.
	baseline := func(run int, kind Baseline) (float64, error) {
		rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		d, err := env.RunBaseline(rctx, kind)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", kind, err)
		}
		fmt.Fprintf(progress, "run %d: %s: %s, %.0f events/s\n", run, kind, d.Round(time.Millisecond), rate(d))
		return rate(d), nil
	}
	ratios := make([][]float64, len(cfg.RuleSets))
	for run := 1; run <= cfg.Runs; run++ {
		r, err := baseline(run, BaselineAck)
		if err != nil {
			return nil, err
		}
		ack = append(ack, r)
		for i, n := range cfg.RuleSets {
			base, err := baseline(run, BaselineJSON)
			if err != nil {
				return nil, err
			}
			js = append(js, base)
			rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			stopProfile, err := startCPUProfile(cfg.CPUProfile, n, run)
			if err != nil {
				cancel()
				return nil, err
			}
			c, err := env.RunCatchUp(rctx, cfg.Segd, files[i], cfg.Dir)
			cancel()
			if perr := stopProfile(); perr != nil && err == nil {
				err = perr
			}
			if err != nil {
				return nil, fmt.Errorf("segd catch-up with %d rules: %w", n, err)
			}
			rows[i].Rates = append(rows[i].Rates, rate(c.Took))
			ratios[i] = append(ratios[i], rate(c.Took)/base)
			rss[i] = append(rss[i], c.PeakRSS)
			rows[i].Applied, rows[i].Invalid = c.Status.Events, c.Status.InvalidItems
			cpu := ""
			if c.CPU > 0 {
				cpu = fmt.Sprintf(", CPU %.2f s", c.CPU.Seconds())
			}
			fmt.Fprintf(progress, "run %d: segd, %d rules: %s, %.0f events/s (%.2f× the encoding/json run before it), peak RSS %s%s\n",
				run, n, c.Took.Round(time.Millisecond), rate(c.Took), rate(c.Took)/base, formatBytes(c.PeakRSS), cpu)
		}
	}
	rep.AckRate, rep.JSONRate = median(ack), median(js)
	for i := range rows {
		rows[i].Rate = median(rows[i].Rates)
		rows[i].Ratio = median(ratios[i])
		rows[i].Ratios = ratios[i]
		rows[i].PeakRSS = medianU(rss[i])
	}
	rep.Rows = rows
	if len(cfg.Freshness.Rates) > 0 {
		fc := cfg.Freshness
		if fc.BatchSize <= 0 {
			fc.BatchSize = sc.BatchSize
		}
		if fc.Duration <= 0 {
			fc.Duration = 10 * time.Second
		}
		if fc.Rules <= 0 {
			fc.Rules = 6
		}
		if fc.Timeout <= 0 {
			fc.Timeout = cfg.Timeout
		}
		fmt.Fprintf(progress, "freshness with %d rules at %v events/s, %s each...\n", fc.Rules, fc.Rates, fc.Duration)
		if rep.Freshness, err = env.RunFreshness(ctx, cfg.Segd, g, cfg.Dir, fc); err != nil {
			return rep, fmt.Errorf("freshness: %w", err)
		}
		rep.FreshRules = fc.Rules
	}
	return rep, nil
}

// startCPUProfile starts a CPU profile of this process to
// PREFIX-<rules>rules-run<run>.pprof (nothing for an empty prefix) and
// returns the function that ends it.
func startCPUProfile(prefix string, rules, run int) (stop func() error, err error) {
	if prefix == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(fmt.Sprintf("%s-%drules-run%d.pprof", prefix, rules, run))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianU(v []uint64) uint64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// Machine describes this machine: CPU model, cores, memory.
func Machine() string {
	model, mem := "", ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb uint64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				mem = fmt.Sprintf(", %.0f GB", float64(kb)/(1<<20))
				break
			}
		}
	}
	if model == "" {
		model = runtime.GOARCH
	}
	return fmt.Sprintf("%s, %d cores%s, %s/%s, %s", model, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func formatBytes(b uint64) string {
	switch {
	case b == 0:
		return "n/a"
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
	}
}
