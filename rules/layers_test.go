package rules

import (
	"strings"
	"testing"
)

// TestCompileLayers: a segment of an upper layer replaces the lower
// layer's (reported as shadowed), references cross layers, and ids repeat
// within a layer only as an error.
func TestCompileLayers(t *testing.T) {
	top := []File{{Name: "kv/a", Data: []byte("id: a\ndid: {event: pay, last: 2d}\n")}}
	files := []File{{Name: "f.yaml", Data: []byte("segments:\n  - id: a\n    did: {event: view, last: 1d}\n  - id: b\n    all: [in_segment: a]\n")}}
	set, shadowed, err := CompileLayers([][]File{top, files}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Segments) != 2 || set.Segments[0].File != "kv/a" || set.Segments[1].ID != "b" {
		t.Fatalf("segments: %+v", set.Segments)
	}
	if len(shadowed) != 1 || shadowed[0] != (Shadowed{ID: "a", File: "f.yaml", Line: 2, By: "kv/a"}) {
		t.Fatalf("shadowed: %+v", shadowed)
	}
	dup := []File{top[0], {Name: "kv/a2", Data: []byte("id: a\ndid: {event: pay, last: 3d}\n")}}
	if _, _, err := CompileLayers([][]File{dup, files}, Options{}); err == nil || !strings.Contains(err.Error(), "kv/a2:1: segment \"a\": id is already defined at kv/a:1") {
		t.Fatalf("a repeated id within a layer: %v", err)
	}
	if _, _, err := CompileLayers([][]File{{{Name: "kv/c", Data: []byte("id: c\nall: [in_segment: nowhere]\n")}}, files}, Options{}); err == nil || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Fatalf("an unknown reference: %v", err)
	}
}
