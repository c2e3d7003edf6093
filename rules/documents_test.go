package rules

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestDocuments: a file of several YAML documents holds the segments of
// each; an empty document (a trailing ---) defines nothing and is no
// error; Documents says where each non-empty document starts and how
// deeply it nests.
func TestDocuments(t *testing.T) {
	t.Parallel()
	src := "---\nid: a\ndid: {event: x, last: 7d}\n---\n# nothing here\n---\nid: b\ndid: {event: y, last: 7d}\n---\n"
	segs, err := compileOne(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[0].ID != "a" || segs[1].ID != "b" {
		t.Fatalf("segments = %v", segs)
	}
	docs, err := Documents("f", []byte(src))
	if err != nil || !slices.Equal(docs, []Document{{Line: 2, Depth: 3}, {Line: 7, Depth: 3}}) {
		t.Fatalf("Documents = %v, %v; want lines 2 and 7, depth 3", docs, err)
	}
	if _, err := Documents("f", []byte("a: [\n")); err == nil || !strings.HasPrefix(err.Error(), "f: not valid YAML") {
		t.Fatalf("invalid YAML: %v", err)
	}
	if _, err := compileOne(t, "null\n"); err == nil {
		t.Fatal("an explicit null document compiled")
	}
}

// TestCheckEvent: Options.CheckEvent is asked about every event name, with
// the file, and its refusal is reported at the name.
func TestCheckEvent(t *testing.T) {
	t.Parallel()
	var asked []string
	opts := Options{CheckEvent: func(file, event string) error {
		asked = append(asked, file+":"+event)
		if event == "typo" {
			return errors.New(`unknown event "typo"`)
		}
		return nil
	}}
	src := "id: a\nsequence:\n  steps:\n    - event: x\n    - events: [y, typo]\n  within: 1d\n  last: 7d\n"
	_, err := Compile([]File{{Name: "f.yaml", Data: []byte(src)}}, opts)
	if err == nil || !strings.Contains(err.Error(), `f.yaml:5:`) || !strings.Contains(err.Error(), `unknown event "typo"`) {
		t.Fatalf("err = %v, want an unknown event at f.yaml:5", err)
	}
	if !slices.Equal(asked, []string{"f.yaml:x", "f.yaml:y", "f.yaml:typo"}) {
		t.Fatalf("asked about %v", asked)
	}
}
