package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// conditionKeys are the keys that start a condition.
var conditionKeys = map[string]bool{
	"did": true, "did_not": true, "sequence": true, "lifecycle": true, "profile": true,
	"in_segment": true, "not_in_segment": true, "all": true, "any": true, "not": true,
}

const conditionKeyList = "did, did_not, sequence, lifecycle, profile, in_segment, not_in_segment, all, any, not"

// condition reads a mapping holding exactly one condition key.
func (p *parser) condition(n *yaml.Node, field string) Condition {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		p.fail(n, p.seg, field, "want a condition: a mapping with one of %s", conditionKeyList)
		return nil
	}
	k, v := n.Content[0], n.Content[1]
	if !conditionKeys[k.Value] {
		p.fail(k, p.seg, field, "unknown condition %q (known: %s)", k.Value, conditionKeyList)
		return nil
	}
	return p.conditionOf(k.Value, v, field+"."+k.Value)
}

// conditionOf reads the value of a condition key.
func (p *parser) conditionOf(key string, v *yaml.Node, field string) Condition {
	switch key {
	case "did":
		if d := p.did(v, field, false); d != nil {
			return d
		}
	case "did_not":
		if d := p.did(v, field, true); d != nil {
			return d
		}
	case "sequence":
		if s := p.sequence(v, field); s != nil {
			return s
		}
	case "lifecycle":
		return p.lifecycle(v, field)
	case "profile":
		if c := p.parseProfile(v, field); c != nil {
			return c
		}
	case "in_segment", "not_in_segment":
		id := p.str(v, p.seg, field)
		if id == "" {
			return nil
		}
		if !segmentID.MatchString(id) {
			p.fail(v, p.seg, field, "%q is not a valid segment id", id)
			return nil
		}
		if key == "not_in_segment" {
			return &Not{Of: &InSegment{Segment: id}}
		}
		return &InSegment{Segment: id}
	case "all", "any":
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			p.fail(v, p.seg, field, "want a non-empty list of conditions, got %s", describe(v))
			return nil
		}
		var of []Condition
		for i, item := range v.Content {
			if c := p.condition(item, fmt.Sprintf("%s[%d]", field, i)); c != nil {
				of = append(of, c)
			}
		}
		if len(of) != len(v.Content) {
			return nil
		}
		if key == "all" {
			return &All{Of: of}
		}
		return &Any{Of: of}
	case "not":
		if c := p.condition(v, field); c != nil {
			return &Not{Of: c}
		}
	}
	return nil
}

// fields reads a mapping's keys, reporting those not in known.
func (p *parser) fields(n *yaml.Node, field string, known ...string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		p.fail(n, p.seg, field, "want a mapping with %s, got %s", strings.Join(known, ", "), describe(n))
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(known, k.Value) {
			p.fail(k, p.seg, field, "unknown field %q (known: %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		out[k.Value] = v
	}
	return out
}

var windowKeys = []string{"last", "between", "since", "ever"}

// did reads `did` (or `did_not`, which is count = 0).
func (p *parser) did(n *yaml.Node, field string, not bool) *Did {
	known := []string{"event", "events", "where", "count", "aggregate", "is"}
	if not {
		known = []string{"event", "events", "where"}
	}
	f := p.fields(n, field, append(known, windowKeys...)...)
	if f == nil {
		return nil
	}
	before := len(p.errs)
	d := &Did{Step: p.step(n, f, field), Aggregate: Aggregate{Func: AggCount}, Compare: Comparison{Op: OpGE, Value: 1}}
	if not {
		d.Compare = Comparison{Op: OpEQ, Value: 0}
	}
	if c := f["count"]; c != nil {
		if f["aggregate"] != nil || f["is"] != nil {
			p.fail(c, p.seg, field, "has count and aggregate/is; count: \">= 3\" is short for aggregate: count, is: \">= 3\"")
		}
		d.Compare = p.comparison(c, field+".count")
	}
	if a := f["aggregate"]; a != nil {
		d.Aggregate = p.aggregate(a, d.Events, field+".aggregate")
		if f["is"] == nil && d.Aggregate.Func != AggCount {
			p.fail(a, p.seg, field+".is", "is missing: say what %s must be, e.g. is: \">= 100\"", d.Aggregate)
		}
	}
	if is := f["is"]; is != nil {
		d.Compare = p.comparison(is, field+".is")
	}
	d.Window = p.windowOf(n, f, field)
	if len(p.errs) > before {
		return nil
	}
	return d
}

// step reads the event names and where of a did, a sequence step or a
// lifecycle.
func (p *parser) step(n *yaml.Node, f map[string]*yaml.Node, field string) Step {
	var s Step
	ev, evs := f["event"], f["events"]
	switch {
	case ev != nil && evs != nil:
		p.fail(n, p.seg, field, "has both event and events; use one")
	case ev != nil:
		if name := p.str(ev, p.seg, field+".event"); name != "" {
			s.Events = []string{name}
		}
	case evs != nil:
		if evs.Kind != yaml.SequenceNode || len(evs.Content) == 0 {
			p.fail(evs, p.seg, field+".events", "want a non-empty list of event names, got %s", describe(evs))
			break
		}
		for _, e := range evs.Content {
			if name := p.str(e, p.seg, field+".events"); name != "" {
				s.Events = append(s.Events, name)
			}
		}
	default:
		p.fail(n, p.seg, field+".event", "is missing: name the event, e.g. `event: checkout`")
	}
	at := ev
	if at == nil {
		at = evs
	}
	for _, name := range s.Events {
		p.checkEvent(at, name, field)
	}
	if w := f["where"]; w != nil {
		s.Where, s.WhereSource = p.eventPredicate(w, p.seg, field+".where")
	}
	return s
}

var aggregateSyntax = regexp.MustCompile(`^\s*(count|days|sum|avg|min|max|distinct)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\))?\s*$`)

// aggregate reads "count", "days", "sum(amount)", "distinct(sku)"...
func (p *parser) aggregate(n *yaml.Node, events []string, field string) Aggregate {
	m := aggregateSyntax.FindStringSubmatch(n.Value)
	if n.Kind != yaml.ScalarNode || m == nil {
		p.fail(n, p.seg, field, "want count, days, sum(PROP), avg(PROP), min(PROP), max(PROP) or distinct(PROP), got %s", describe(n))
		return Aggregate{Func: AggCount}
	}
	a := Aggregate{Func: AggFunc(m[1]), Prop: m[2]}
	needsProp := a.Func != AggCount && a.Func != AggDays
	switch {
	case needsProp && a.Prop == "":
		p.fail(n, p.seg, field, "%s needs a property: %s(amount)", a.Func, a.Func)
	case !needsProp && a.Prop != "":
		p.fail(n, p.seg, field, "%s takes no property", a.Func)
	case a.Numeric():
		p.checkNumeric(n, events, a.Func, a.Prop, field)
	}
	return a
}

func (p *parser) comparison(n *yaml.Node, field string) Comparison {
	c, err := ParseComparison(n.Value)
	if n.Kind != yaml.ScalarNode {
		err = fmt.Errorf("want a comparison such as \">= 3\", got %s", describe(n))
	}
	if err != nil {
		p.fail(n, p.seg, field, "%v", err)
	}
	return c
}

// windowOf reads the one window key of a condition.
func (p *parser) windowOf(n *yaml.Node, f map[string]*yaml.Node, field string) Window {
	var found []string
	for _, k := range windowKeys {
		if f[k] != nil {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		p.fail(n, p.seg, field+".last", "is missing: give a window: last: 7d, last: 24h, between: [2026-11-01, 2026-11-15], since: 2026-10-01 or ever: true")
		return Window{}
	case 1:
	default:
		p.fail(n, p.seg, field, "has %s; give one window", strings.Join(found, " and "))
		return Window{}
	}
	k := found[0]
	v := f[k]
	field += "." + k
	switch k {
	case "last":
		return p.rolling(v, field)
	case "between":
		if v.Kind != yaml.SequenceNode || len(v.Content) != 2 {
			p.fail(v, p.seg, field, "want two dates, [2026-11-01, 2026-11-15], got %s", describe(v))
			return Window{}
		}
		start, end := p.date(v.Content[0], field), p.date(v.Content[1], field)
		if start.midnight(time.UTC) > end.midnight(time.UTC) {
			p.fail(v, p.seg, field, "%s is after %s", start, end)
		}
		return Window{Kind: Between, Start: start, End: end, Text: fmt.Sprintf("between %s and %s", start, end)}
	case "since":
		start := p.date(v, field)
		return Window{Kind: Since, Start: start, Text: "since " + start.String()}
	default: // ever
		if v.Tag != "!!bool" || v.Value != "true" {
			p.fail(v, p.seg, field, "want true, got %s", describe(v))
		}
		r := p.opts.MaxWindowDays
		return Window{Kind: Rolling, Unit: Day, From: r - 1, Text: fmt.Sprintf("ever (the %dd of retention)", r)}
	}
}

var rollingSyntax = regexp.MustCompile(`^\s*(\d+)\s*([dh])\s*$`)

// rolling reads "7d" (today and the 6 calendar days before) or "24h" (this
// hour and the 23 before).
func (p *parser) rolling(n *yaml.Node, field string) Window {
	m := rollingSyntax.FindStringSubmatch(n.Value)
	if n.Kind != yaml.ScalarNode || m == nil {
		p.fail(n, p.seg, field, "want a number of calendar days such as 7d, or of hours such as 24h, got %s", describe(n))
		return Window{}
	}
	count, _ := strconv.Atoi(m[1])
	w := Window{Kind: Rolling, From: count - 1, Text: "last " + strings.TrimSpace(n.Value)}
	maxUnits := p.opts.MaxWindowDays
	if m[2] == "h" {
		w.Unit = Hour
		maxUnits *= 24
	}
	switch {
	case count < 1:
		p.fail(n, p.seg, field, "%s: a window is at least 1%s", strings.TrimSpace(n.Value), m[2])
	case count > maxUnits:
		p.fail(n, p.seg, field, "%s is longer than the %dd of history segd keeps (retention)", strings.TrimSpace(n.Value), p.opts.MaxWindowDays)
	}
	return w
}

// days reads a whole number of days such as 30d.
func (p *parser) days(n *yaml.Node, field string) int {
	m := rollingSyntax.FindStringSubmatch(n.Value)
	if n.Kind != yaml.ScalarNode || m == nil || m[2] != "d" {
		p.fail(n, p.seg, field, "want a number of days such as 30d, got %s", describe(n))
		return 0
	}
	d, _ := strconv.Atoi(m[1])
	if d < 1 {
		p.fail(n, p.seg, field, "want at least 1d")
	}
	return d
}

func (p *parser) date(n *yaml.Node, field string) Date {
	t, err := time.Parse(time.DateOnly, n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		p.fail(n, p.seg, field, "want a date such as 2026-11-01, got %s", describe(n))
		return Date{}
	}
	return Date{t.Year(), t.Month(), t.Day()}
}

var durationSyntax = regexp.MustCompile(`^\s*(\d+)\s*d\s*$`)

// duration reads "24h", "30m", "90s" or "7d".
func (p *parser) duration(n *yaml.Node, field string) time.Duration {
	if n.Kind == yaml.ScalarNode {
		if m := durationSyntax.FindStringSubmatch(n.Value); m != nil {
			d, _ := strconv.Atoi(m[1])
			return time.Duration(d) * 24 * time.Hour
		}
		if d, err := time.ParseDuration(strings.TrimSpace(n.Value)); err == nil && d > 0 {
			return d
		}
	}
	p.fail(n, p.seg, field, "want a positive duration such as 24h, 30m or 7d, got %s", describe(n))
	return 0
}

// sequence reads steps A → B (→ C …) within a duration, or a drop-off:
// one step, then_not another.
func (p *parser) sequence(n *yaml.Node, field string) *Sequence {
	f := p.fields(n, field, append([]string{"steps", "then_not", "within"}, windowKeys...)...)
	if f == nil {
		return nil
	}
	before := len(p.errs)
	s := &Sequence{}
	steps := f["steps"]
	switch {
	case steps == nil:
		p.fail(n, p.seg, field+".steps", "is missing: list the steps, e.g. [{event: submit_order}, {event: pay}]")
	case steps.Kind != yaml.SequenceNode || len(steps.Content) == 0:
		p.fail(steps, p.seg, field+".steps", "want a non-empty list of steps, got %s", describe(steps))
	default:
		for i, st := range steps.Content {
			sf := fmt.Sprintf("%s.steps[%d]", field, i)
			if sm := p.fields(st, sf, "event", "events", "where"); sm != nil {
				s.Steps = append(s.Steps, p.step(st, sm, sf))
			}
		}
	}
	if tn := f["then_not"]; tn != nil {
		if sm := p.fields(tn, field+".then_not", "event", "events", "where"); sm != nil {
			step := p.step(tn, sm, field+".then_not")
			s.ThenNot = &step
		}
		if len(s.Steps) > 1 {
			p.fail(tn, p.seg, field+".then_not", "a drop-off has one step before then_not (did A, then no B within the time)")
		}
	} else if steps != nil && len(s.Steps) < 2 && len(p.errs) == before {
		p.fail(steps, p.seg, field+".steps", "a sequence has at least two steps, or one step and then_not")
	}
	if w := f["within"]; w != nil {
		s.Within = p.duration(w, field+".within")
	} else {
		p.fail(n, p.seg, field+".within", "is missing: how long after the first step, e.g. within: 24h")
	}
	s.Window = p.windowOf(n, f, field)
	if len(p.errs) > before {
		return nil
	}
	return s
}

// lifecycle reads new, stopped and returned, which are made of did and
// did_not over consecutive windows of calendar days ending today:
//
//	new:      did E in the last K days, and not in the retention before them
//	stopped:  did E in the N days before the last M, and not in the last M
//	returned: did E in the N days before a gap of M days with no E, and
//	          again in the last K days
//
// An optional count (default ">= 1") says how much doing E is active.
func (p *parser) lifecycle(n *yaml.Node, field string) Condition {
	f := p.fields(n, field, "stage", "event", "events", "where", "last", "previous", "gap", "count")
	if f == nil {
		return nil
	}
	before := len(p.errs)
	step := p.step(n, f, field)
	stage := ""
	if st := f["stage"]; st == nil {
		p.fail(n, p.seg, field+".stage", "is missing: new, stopped or returned")
	} else if stage = st.Value; stage != "new" && stage != "stopped" && stage != "returned" {
		p.fail(st, p.seg, field+".stage", "want new, stopped or returned, got %s", describe(st))
	}
	need := func(key string) int {
		v := f[key]
		if v == nil {
			p.fail(n, p.seg, field+"."+key, "is missing for stage %s", stage)
			return 0
		}
		return p.days(v, field+"."+key)
	}
	refuse := func(key string) {
		if v := f[key]; v != nil {
			p.fail(v, p.seg, field+"."+key, "does not apply to stage %s", stage)
		}
	}
	// count says how active "active" is, e.g. ">= 20" for very active users.
	active := Comparison{Op: OpGE, Value: 1}
	if c := f["count"]; c != nil {
		active = p.comparison(c, field+".count")
		if active.Holds(0) {
			p.fail(c, p.seg, field+".count", "%s holds for users with no event; an active period needs at least one", active)
		}
	}
	did := func(from, to int, not bool) *Did {
		d := &Did{Step: step, Aggregate: Aggregate{Func: AggCount}, Compare: active,
			Window: Window{Kind: Rolling, Unit: Day, From: from, To: to, Text: fmt.Sprintf("days %d to %d ago", from, to)}}
		if not {
			d.Compare = Comparison{Op: OpEQ, Value: 0}
		}
		return d
	}
	var c Condition
	span := 0
	switch stage {
	case "new":
		refuse("previous")
		refuse("gap")
		k := need("last")
		span = k
		c = &All{Of: []Condition{did(k-1, 0, false), did(p.opts.MaxWindowDays-1, k, true)}}
	case "stopped":
		refuse("gap")
		m, prev := need("last"), need("previous")
		span = m + prev
		c = &All{Of: []Condition{did(m+prev-1, m, false), did(m-1, 0, true)}}
	case "returned":
		k, gap, prev := need("last"), need("gap"), need("previous")
		span = k + gap + prev
		c = &All{Of: []Condition{did(k+gap+prev-1, k+gap, false), did(k+gap-1, k, true), did(k-1, 0, false)}}
	}
	if span > p.opts.MaxWindowDays || (stage == "new" && span >= p.opts.MaxWindowDays) {
		p.fail(n, p.seg, field, "spans %dd, longer than the %dd of history segd keeps (retention)", span, p.opts.MaxWindowDays)
	}
	if len(p.errs) > before {
		return nil
	}
	return c
}

func (p *parser) parseProfile(n *yaml.Node, field string) *ProfileCondition {
	if ref, ok := p.pluginRef(n, p.seg, field); ok {
		if ref == nil {
			return nil
		}
		pred, err := p.resolveProfilePlugin(*ref)
		if err != nil {
			p.fail(n, p.seg, field, "%v", err)
			return nil
		}
		return &ProfileCondition{Predicate: pred, Source: "plugin " + ref.Name}
	}
	src := p.str(n, p.seg, field)
	if src == "" {
		return nil
	}
	prog, err := compileProfileExpr(src)
	if err != nil {
		p.exprFail(n, p.seg, field, err)
		return nil
	}
	return &ProfileCondition{Predicate: newExprProfilePredicate(src, prog), Source: src}
}
