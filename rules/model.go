package rules

import (
	"fmt"
	"strconv"
	"strings"
)

// Segment kinds, as segment.list reports them.
const (
	KindBehavioral = "behavioral"
	KindAttribute  = "attribute"
	KindStatic     = "static"
)

// Segment is a compiled segment definition: an id and exactly one condition.
type Segment struct {
	// ID names the segment in requests and subjects: letters, digits, '_'
	// and '-', starting with a letter.
	ID          string
	Description string
	// File and Line locate the definition, for messages.
	File string
	Line int
	// Source is the segment's definition as YAML, for display.
	Source string

	// Did is set for behavioral segments, Profile for attribute segments;
	// Static segments have no rule: their members are uploaded.
	Did     *Did
	Profile *ProfileCondition
	Static  bool
}

// Kind reports KindBehavioral, KindAttribute or KindStatic.
func (s *Segment) Kind() string {
	switch {
	case s.Did != nil:
		return KindBehavioral
	case s.Static:
		return KindStatic
	}
	return KindAttribute
}

// Did is a behavioral condition: the user did one of Events, each
// satisfying Where, a number of times that satisfies Count, within Window.
type Did struct {
	Events []string
	// Where filters the events; nil keeps all of them.
	Where EventPredicate
	// WhereSource is the expression or plugin reference, for display.
	WhereSource string
	Count       Comparison
	Window      Window
}

// ProfileCondition is an attribute condition over the user's profile.
type ProfileCondition struct {
	Predicate ProfilePredicate
	Source    string
}

// Window is a rolling window of calendar days: today and the Days-1 days
// before it, in the engine's time zone.
type Window struct {
	Days int
}

func (w Window) String() string { return fmt.Sprintf("last %dd", w.Days) }

// Op is a comparison operator.
type Op string

// Comparison operators.
const (
	OpGE      Op = ">="
	OpGT      Op = ">"
	OpEQ      Op = "="
	OpNE      Op = "!="
	OpLE      Op = "<="
	OpLT      Op = "<"
	OpBetween Op = "between"
)

// Comparison compares an aggregate with a value, or with the inclusive range
// [Value, High] for OpBetween.
type Comparison struct {
	Op    Op
	Value float64
	High  float64
}

// Holds reports whether x satisfies the comparison.
func (c Comparison) Holds(x float64) bool {
	switch c.Op {
	case OpGE:
		return x >= c.Value
	case OpGT:
		return x > c.Value
	case OpEQ:
		return x == c.Value
	case OpNE:
		return x != c.Value
	case OpLE:
		return x <= c.Value
	case OpLT:
		return x < c.Value
	case OpBetween:
		return x >= c.Value && x <= c.High
	}
	return false
}

func (c Comparison) String() string {
	if c.Op == OpBetween {
		return fmt.Sprintf("between %s and %s", fmtNum(c.Value), fmtNum(c.High))
	}
	return string(c.Op) + " " + fmtNum(c.Value)
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// ParseComparison reads ">= 3", "<3", "= 0", "== 0", "!= 1" or
// "between 2 and 5". A bare number N means ">= N", since "at least N times"
// is what a count usually asks.
func ParseComparison(s string) (Comparison, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "between"); ok {
		lo, hi, ok := strings.Cut(rest, "and")
		if !ok {
			return Comparison{}, fmt.Errorf("want %q, got %q", "between LOW and HIGH", s)
		}
		l, err1 := strconv.ParseFloat(strings.TrimSpace(lo), 64)
		h, err2 := strconv.ParseFloat(strings.TrimSpace(hi), 64)
		if err1 != nil || err2 != nil {
			return Comparison{}, fmt.Errorf("want %q with numbers, got %q", "between LOW and HIGH", s)
		}
		if l > h {
			return Comparison{}, fmt.Errorf("%q: the low end is above the high end", s)
		}
		return Comparison{Op: OpBetween, Value: l, High: h}, nil
	}
	for _, op := range []Op{OpGE, OpLE, OpNE, "==", OpGT, OpLT, OpEQ} {
		if rest, ok := strings.CutPrefix(s, string(op)); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return Comparison{}, fmt.Errorf("%q: want a number after %s", s, op)
			}
			if op == "==" {
				op = OpEQ
			}
			return Comparison{Op: op, Value: v}, nil
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Comparison{}, fmt.Errorf("want a comparison such as \">= 3\", \"< 2\", \"= 0\" or \"between 2 and 5\", got %q", s)
	}
	return Comparison{Op: OpGE, Value: v}, nil
}
