package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"

	"gopkg.in/yaml.v3"
)

// Manifest holds a plugin's limits and settings, read from NAME.yaml (or
// NAME.json) next to NAME.wasm. Every field is optional: a zero value takes
// the value from Options.Defaults, then the built-in default.
type Manifest struct {
	// Description is free text shown in listings.
	Description string `yaml:"description" json:"description,omitempty"`
	// MemoryMiB caps the guest's linear memory (default 32).
	MemoryMiB int `yaml:"memory_mib" json:"memory_mib,omitempty"`
	// DeadlineMS is the per-batch deadline in milliseconds (default 100).
	DeadlineMS int `yaml:"deadline_ms" json:"deadline_ms,omitempty"`
	// Interrupt enforces the deadline by interrupting the guest (default
	// true): the module is rewritten with a countdown at every loop header
	// and function entry that calls the host, which stops it past the
	// deadline (about 1%; see docs/plugins.md). false runs the module as it
	// is: a batch over its deadline is then only reported, and a plugin that
	// never returns keeps its goroutine forever and stalls garbage
	// collection, so set it only for vetted plugins.
	Interrupt *bool `yaml:"interrupt" json:"interrupt,omitempty"`
	// MaxBatch caps the items per guest call (default 4096, rounded up to a
	// multiple of 64); larger batches are split.
	MaxBatch int `yaml:"max_batch" json:"max_batch,omitempty"`
	// MaxBatchMiB caps the encoded bytes per guest call (default 8); a chunk
	// over it is split further.
	MaxBatchMiB int `yaml:"max_batch_mib" json:"max_batch_mib,omitempty"`
	// Instances caps the warm instances per parameter set (default GOMAXPROCS).
	Instances int `yaml:"instances" json:"instances,omitempty"`
	// Prewarm is how many instances are started when a rule first uses the
	// plugin (default 1, at most Instances).
	Prewarm int `yaml:"prewarm" json:"prewarm,omitempty"`
	// RecycleCalls replaces an instance after that many batches (default 100000).
	RecycleCalls int `yaml:"recycle_calls" json:"recycle_calls,omitempty"`
	// RecycleMemoryMiB replaces an instance whose memory grew past it
	// (default three quarters of MemoryMiB).
	RecycleMemoryMiB int `yaml:"recycle_memory_mib" json:"recycle_memory_mib,omitempty"`
	// Props lists the properties (attributes) the plugin reads. When set,
	// only those are encoded into batches, which is faster and hands the
	// plugin no more data than it needs; when empty, every property is sent.
	Props []string `yaml:"props" json:"props,omitempty"`
	// Omit lists item fields the plugin does not read, among "user", "name"
	// and "time": they are sent empty (zero), which saves copying them into
	// every batch. The plugin then sees "" / 0 for them.
	Omit []string `yaml:"omit" json:"omit,omitempty"`
	// LogPerSecond is the rate of log lines the plugin may emit (default 10,
	// with bursts of twice that); excess lines are dropped and counted.
	LogPerSecond int `yaml:"log_per_second" json:"log_per_second,omitempty"`
	// FailAfter marks the plugin failed after that many consecutive failed
	// batches (default 3).
	FailAfter int `yaml:"fail_after" json:"fail_after,omitempty"`
}

// Built-in defaults.
const (
	DefaultMemoryMiB      = 32
	DefaultDeadlineMS     = 100
	DefaultMaxBatch       = 4096
	DefaultMaxBatchMiB    = 8
	DefaultRecycleCalls   = 100000
	DefaultLogPerSecond   = 10
	DefaultFailAfter      = 3
	DefaultMaxModuleBytes = 10 << 20
)

// resolve fills zero fields from d and then from the built-in defaults, and
// checks ranges. file names the manifest in errors.
func (m Manifest) resolve(d Manifest, file string) (Manifest, error) {
	pick := func(v, dv, bv int) int {
		if v != 0 {
			return v
		}
		if dv != 0 {
			return dv
		}
		return bv
	}
	r := m
	r.MemoryMiB = pick(m.MemoryMiB, d.MemoryMiB, DefaultMemoryMiB)
	r.DeadlineMS = pick(m.DeadlineMS, d.DeadlineMS, DefaultDeadlineMS)
	r.MaxBatch = pick(m.MaxBatch, d.MaxBatch, DefaultMaxBatch)
	r.MaxBatchMiB = pick(m.MaxBatchMiB, d.MaxBatchMiB, DefaultMaxBatchMiB)
	r.Instances = pick(m.Instances, d.Instances, runtime.GOMAXPROCS(0))
	r.Prewarm = pick(m.Prewarm, d.Prewarm, 1)
	r.RecycleCalls = pick(m.RecycleCalls, d.RecycleCalls, DefaultRecycleCalls)
	r.RecycleMemoryMiB = pick(m.RecycleMemoryMiB, d.RecycleMemoryMiB, r.MemoryMiB*3/4)
	r.LogPerSecond = pick(m.LogPerSecond, d.LogPerSecond, DefaultLogPerSecond)
	r.FailAfter = pick(m.FailAfter, d.FailAfter, DefaultFailAfter)
	if r.Interrupt == nil {
		r.Interrupt = d.Interrupt
	}
	if r.Interrupt == nil {
		t := true
		r.Interrupt = &t
	}
	if r.Props == nil {
		r.Props = d.Props
	}
	for _, c := range []struct {
		name     string
		v, lo, h int
	}{
		{"memory_mib", r.MemoryMiB, 1, 4096},
		{"deadline_ms", r.DeadlineMS, 1, 60000},
		{"max_batch", r.MaxBatch, 1, 1 << 20},
		{"max_batch_mib", r.MaxBatchMiB, 1, 256},
		{"instances", r.Instances, 1, 1024},
		{"prewarm", r.Prewarm, 0, 1024},
		{"recycle_calls", r.RecycleCalls, 1, 1 << 40},
		{"recycle_memory_mib", r.RecycleMemoryMiB, 1, 4096},
		{"log_per_second", r.LogPerSecond, 1, 1 << 20},
		{"fail_after", r.FailAfter, 1, 1 << 20},
	} {
		if c.v < c.lo || c.v > c.h {
			return r, fmt.Errorf("%s: %s is %d, want %d..%d", file, c.name, c.v, c.lo, c.h)
		}
	}
	if r.MemoryMiB*16 > 65536 {
		return r, fmt.Errorf("%s: memory_mib %d exceeds the 4 GiB of a 32-bit memory", file, r.MemoryMiB)
	}
	r.MaxBatch = (r.MaxBatch + 63) / 64 * 64
	r.Prewarm = min(r.Prewarm, r.Instances)
	seen := map[string]bool{}
	for _, p := range r.Props {
		if p == "" || seen[p] {
			return r, fmt.Errorf("%s: props: %q is empty or listed twice", file, p)
		}
		seen[p] = true
	}
	r.Props = slices.Clone(r.Props)
	if r.Omit == nil {
		r.Omit = d.Omit
	}
	for _, o := range r.Omit {
		switch o {
		case "user", "name", "time":
		default:
			return r, fmt.Errorf("%s: omit: %q is not one of user, name, time", file, o)
		}
	}
	r.Omit = slices.Clone(r.Omit)
	return r, nil
}

// ParseManifest decodes a manifest from YAML or JSON (JSON is YAML too);
// unknown fields are errors. file names the source in errors.
func ParseManifest(data []byte, file string) (Manifest, error) {
	var m Manifest
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return m, fmt.Errorf("%s: %w", file, err)
		}
		return m, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil && !errors.Is(err, io.EOF) {
		return m, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// readManifest reads base+".yaml", ".yml" or ".json", whichever exists.
func readManifest(base string) (Manifest, string, error) {
	for _, ext := range []string{".yaml", ".yml", ".json"} {
		data, err := os.ReadFile(base + ext)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return Manifest{}, base + ext, err
		}
		m, err := ParseManifest(data, base+ext)
		return m, base + ext, err
	}
	return Manifest{}, "", nil
}
