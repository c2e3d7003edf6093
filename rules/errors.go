package rules

import (
	"fmt"
	"strings"
)

// Error is one problem in a rule file, located as precisely as segd can:
// the file, the line and column in it, the segment, and the field.
type Error struct {
	File    string
	Line    int // 1-based; 0 when unknown
	Column  int // 1-based; 0 when unknown
	Segment string
	// Kind is what Segment names: "segment" (when empty) or "predicate".
	Kind  string
	Field string // dotted path inside the segment, e.g. "did.where"
	Msg   string
}

// Error formats the problem as FILE:LINE:COL: segment "ID": FIELD: message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Segment != "" {
		kind := e.Kind
		if kind == "" {
			kind = "segment"
		}
		fmt.Fprintf(&b, "%s %q: ", kind, e.Segment)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a set of rule files, in file order.
type ErrorList []*Error

// Error lists the problems one per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// err returns the list as an error, or nil when it is empty.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
