package rules

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCompile feeds the rule compiler arbitrary rule files (seeded with the
// example rules): segment.preview hands it definitions from any NATS
// client, so it must answer every input with segments or an error, never a
// panic, and every error it returns must be located in the file.
func FuzzCompile(f *testing.F) {
	for _, p := range []string{"../examples/rules/shop.yaml", "../examples/rules/stories.yaml"} {
		data, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("segments:\n  - id: a\n    sequence: {steps: [{event: x}, {event: y}], within: 1h, then_not: {event: z}, last: 7d}\n"))
	f.Add([]byte("segments:\n  - id: b\n    lifecycle: {stage: returned, after: 14d, last: 7d}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
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
