package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Segment kinds, as segment.list reports them.
const (
	// KindBehavioral: every condition reads events.
	KindBehavioral = "behavioral"
	// KindAttribute: every condition reads the profile.
	KindAttribute = "attribute"
	// KindComposite: conditions of several kinds, or other segments.
	KindComposite = "composite"
	// KindStatic: no rule; members are uploaded.
	KindStatic = "static"
)

// Segment is a compiled segment definition: an id and one condition, or
// none for a static segment.
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

	// Condition is the rule; nil for a static segment.
	Condition Condition
	// Static segments have no rule: their members are uploaded.
	Static bool
	// References are the ids of the segments the condition reads, sorted.
	References []string
}

// Kind reports KindBehavioral, KindAttribute, KindComposite or KindStatic.
func (s *Segment) Kind() string {
	if s.Static {
		return KindStatic
	}
	events, profiles, others := 0, 0, 0
	Walk(s.Condition, func(c Condition) {
		switch c.(type) {
		case *Did, *Sequence:
			events++
		case *ProfileCondition:
			profiles++
		case *InSegment:
			others++
		}
	})
	switch {
	case others == 0 && profiles == 0:
		return KindBehavioral
	case others == 0 && events == 0:
		return KindAttribute
	}
	return KindComposite
}

// Condition is a node of a rule's condition tree: a combinator (All, Any,
// Not) or a leaf (Did, Sequence, ProfileCondition, InSegment).
type Condition interface{ condition() }

// All holds when every one of its conditions holds.
type All struct{ Of []Condition }

// Any holds when at least one of its conditions holds.
type Any struct{ Of []Condition }

// Not holds for every user of the universe (every user seen) for whom its
// condition does not hold.
type Not struct{ Of Condition }

// Step matches events: one of Events, satisfying Where.
type Step struct {
	Events []string
	// Where filters the events; nil keeps all of them.
	Where EventPredicate
	// WhereSource is the expression or plugin reference, for display.
	WhereSource string
}

// Did holds when an aggregate over the user's matching events in Window
// satisfies Compare. `did_not` is Did with count = 0.
type Did struct {
	Step
	Aggregate Aggregate
	Compare   Comparison
	Window    Window
}

// Sequence holds when the user did Steps in order, each strictly after the
// one before, all within Within of the first, with the first step inside
// Window. With ThenNot (one step only), it is a drop-off instead: the user
// did the step in Window and no ThenNot event followed within Within, and
// Within has run out.
type Sequence struct {
	Steps   []Step
	ThenNot *Step
	Within  time.Duration
	Window  Window
}

// ProfileCondition is an attribute condition over the user's profile.
type ProfileCondition struct {
	Predicate ProfilePredicate
	Source    string
}

// NamedPredicate is an event predicate defined once in a rule file and
// named, so that analysis can use it as a funnel step or an event series
// (as "@ID"), indexed like an event.
type NamedPredicate struct {
	ID          string
	Description string
	Step
	File string
	Line int
}

// InSegment holds for the members of another segment.
type InSegment struct{ Segment string }

func (*All) condition()              {}
func (*Any) condition()              {}
func (*Not) condition()              {}
func (*Did) condition()              {}
func (*Sequence) condition()         {}
func (*ProfileCondition) condition() {}
func (*InSegment) condition()        {}

// Walk calls fn for c and every condition below it, parents first.
func Walk(c Condition, fn func(Condition)) {
	if c == nil {
		return
	}
	fn(c)
	switch c := c.(type) {
	case *All:
		for _, k := range c.Of {
			Walk(k, fn)
		}
	case *Any:
		for _, k := range c.Of {
			Walk(k, fn)
		}
	case *Not:
		Walk(c.Of, fn)
	}
}

// AggFunc names an aggregate over a user's matching events.
type AggFunc string

// Aggregates. Over no events, count, sum, days and distinct are 0, and
// avg, min and max are undefined: no comparison holds for them.
const (
	AggCount    AggFunc = "count"
	AggSum      AggFunc = "sum"
	AggAvg      AggFunc = "avg"
	AggMin      AggFunc = "min"
	AggMax      AggFunc = "max"
	AggDays     AggFunc = "days"     // distinct calendar days with an event
	AggDistinct AggFunc = "distinct" // distinct values of a property
)

// Aggregate is an aggregate function and the property it reads (none for
// count and days).
type Aggregate struct {
	Func AggFunc
	Prop string
}

// String writes the aggregate as a rule does: count, sum(amount).
func (a Aggregate) String() string {
	if a.Prop == "" {
		return string(a.Func)
	}
	return fmt.Sprintf("%s(%s)", a.Func, a.Prop)
}

// Numeric reports whether the aggregate reads a number from its property.
func (a Aggregate) Numeric() bool {
	switch a.Func {
	case AggSum, AggAvg, AggMin, AggMax:
		return true
	}
	return false
}

// Unit is the bucket of a rolling window.
type Unit int

// Window units.
const (
	Day Unit = iota
	Hour
)

// WindowKind tells how a window's ends are fixed.
type WindowKind int

// Window kinds.
const (
	// Rolling windows move with the clock: `last: 7d`, `last: 24h`, `ever`.
	Rolling WindowKind = iota
	// Between is fixed: two calendar dates, both inclusive.
	Between
	// Since starts on a fixed date and ends today.
	Since
)

// Window is the span of time a condition looks at.
type Window struct {
	Kind WindowKind
	Unit Unit
	// From and To count units back from the current one, for Rolling
	// windows: the window is [current-From, current-To]. `last: 7d` is
	// From 6, To 0; lifecycle conditions use windows that end before today.
	From, To int
	// Start and End are calendar dates (End only for Between).
	Start, End Date
	// Text is how the rule wrote it, for messages.
	Text string
}

// String is the window as the rule wrote it.
func (w Window) String() string { return w.Text }

// Date is a calendar date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// String formats the date as YYYY-MM-DD.
func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// Interval returns the window as [start, end) in Unix milliseconds when the
// clock reads now, with calendar days in loc. Hour buckets are whole UTC
// hours, which are local hours in every zone with a whole-hour offset.
func (w Window) Interval(now int64, loc *time.Location) (start, end int64) {
	switch w.Kind {
	case Between:
		return w.Start.midnight(loc), w.End.next().midnight(loc)
	case Since:
		return w.Start.midnight(loc), DateOf(now, loc).next().midnight(loc)
	}
	if w.Unit == Hour {
		h := floorDiv(now, hourMs)
		return (h - int64(w.From)) * hourMs, (h - int64(w.To) + 1) * hourMs
	}
	today := DateOf(now, loc)
	return today.addDays(-w.From).midnight(loc), today.addDays(-w.To + 1).midnight(loc)
}

const hourMs = int64(time.Hour / time.Millisecond)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// DateOf returns the calendar date of a Unix-millisecond time in loc.
func DateOf(ms int64, loc *time.Location) Date {
	y, m, d := DayOf(ms, loc).Date()
	return Date{y, m, d}
}

func (d Date) day() CalendarDay { return DayOfDate(d.Year, d.Month, d.Day) }

func (d Date) midnight(loc *time.Location) int64 { return d.day().Start(loc) }

func (d Date) addDays(n int) Date {
	y, m, dd := (d.day() + CalendarDay(n)).Date()
	return Date{y, m, dd}
}

func (d Date) next() Date { return d.addDays(1) }

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

// String writes the comparison as a rule does: ">= 3", "between 2 and 5".
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
