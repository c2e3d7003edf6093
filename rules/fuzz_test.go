package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// maxFuzzRuleBytes bounds the inputs FuzzCompile compiles. The fuzzer
// minimizes every input that finds new coverage before it goes on, and
// its minimizer tries removing every range of bytes: quadratic in the
// input's size. From the example files whole (2-4 KiB) each new input took
// up to -fuzzminimizetime (60 s) to minimize, during which the fuzzer
// reported 0 execs/s. Larger rule files are the limits' business
// (parse_test.go, conditions_test.go), not the fuzzer's.
const maxFuzzRuleBytes = 1024

// fuzzSeeds are the example rule files cut into one file per segment,
// each small enough to minimize quickly.
func fuzzSeeds(f testing.TB) [][]byte {
	var out [][]byte
	for _, p := range []string{"../examples/rules/shop.yaml", "../examples/rules/stories.yaml"} {
		data, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			f.Fatal(err)
		}
		var file struct {
			Segments []yaml.Node `yaml:"segments"`
		}
		if err := yaml.Unmarshal(data, &file); err != nil || len(file.Segments) == 0 {
			f.Fatalf("%s: %v", p, err)
		}
		for _, seg := range file.Segments {
			one, err := yaml.Marshal(map[string][]yaml.Node{"segments": {seg}})
			if err != nil {
				f.Fatal(err)
			}
			if len(one) > maxFuzzRuleBytes {
				f.Fatalf("%s: a segment of %d bytes, over the fuzz bound %d", p, len(one), maxFuzzRuleBytes)
			}
			out = append(out, one)
		}
	}
	return out
}

// FuzzCompile feeds the rule compiler arbitrary rule files (seeded with the
// example rules, a segment at a time): segment.preview hands it
// definitions from any NATS client, so it must answer every input with
// segments or an error, never a panic, and every error it returns must be
// located in the file.
func FuzzCompile(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Add([]byte("segments:\n  - id: a\n    sequence: {steps: [{event: x}, {event: y}], within: 1h, then_not: {event: z}, last: 7d}\n"))
	f.Add([]byte("segments:\n  - id: b\n    lifecycle: {stage: returned, after: 14d, last: 7d}\n"))
	f.Add([]byte("segments:\n  - id: a\n    profile: vip == true\n  - id: c\n    all: [{in_segment: a}, {not: {did: {event: pay, last: 7d}}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzRuleBytes {
			return // see maxFuzzRuleBytes
		}
		_, err := CompileSet([]File{{Name: "fuzz.yaml", Data: data}}, Options{})
		if err == nil {
			return
		}
		list, ok := err.(ErrorList)
		if !ok {
			t.Fatalf("error is a %T, not an ErrorList: %v", err, err)
		}
		for _, e := range list {
			if e.File != "fuzz.yaml" {
				t.Fatalf("error not located in the file: %v", e)
			}
		}
	})
}

// TestFuzzSeedsCompile: the seeds cut from the example files are each a
// segment of them, small, that the compiler accepts (those that read
// another segment aside, which is not in the seed), so the fuzzer starts
// from valid rules of every kind.
func TestFuzzSeedsCompile(t *testing.T) {
	t.Parallel()
	seeds := fuzzSeeds(t)
	if len(seeds) < 10 {
		t.Fatalf("%d seeds from the example files", len(seeds))
	}
	for _, seed := range seeds {
		segs, err := CompileSet([]File{{Name: "seed.yaml", Data: seed}}, Options{})
		if err != nil && !strings.Contains(err.Error(), "which is not defined") {
			t.Errorf("seed %q: %v", seed, err)
		}
		if err == nil && len(segs.Segments) != 1 {
			t.Errorf("seed %q: %d segments", seed, len(segs.Segments))
		}
	}
}
