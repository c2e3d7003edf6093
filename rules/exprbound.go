package rules

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	exprparser "github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// Run-time bounds: what checkCost cannot decide from the text, because it
// depends on the item, is metered while the expression runs. Each item gets
// exprFuel units of work; going past it fails the item with an evaluation
// error (counted, shown by segment.list and segment.preview), as going
// past the VM's memory budget does.
const (
	// exprFuel is the work one item may cost. A loop charges its list's
	// length times the size (in nodes) of its body before it starts; a
	// builtin whose cost grows with its input (linear) charges the length
	// of its arguments and of its result; + charges the length of the
	// string it builds; `in`, contains and matches charge the length of
	// what they scan. One unit is about one node evaluated or one byte
	// copied: 1e6 units cost at most a few tens of milliseconds
	// (BenchmarkExprWorstAccepted).
	exprFuel = 1_000_000
	// exprMemoryBudget is the VM's memory budget for one item (expr
	// charges it for ranges, array and map literals, sorts, repeat,
	// concat and flatten). It is expr's default, set here so that the
	// bound is ours and documented.
	exprMemoryBudget = 1_000_000
)

// Names the metering patches in. They start with "__segd_" so that no
// rule's names collide with them; a rule that calls them only spends fuel.
const (
	meterVar  = "__segd_meter"
	newMeterF = "__segd_new_meter"
	chargeF   = "__segd_charge"
	loopF     = "__segd_loop"
	addF      = "__segd_add"
	tzF       = "__segd_timezone"
	dateF     = "__segd_date"
)

// Time zones: expr's timezone() and date(s, layout, zone) load the zone
// from the zoneinfo database on every call (tens of microseconds, close to
// a millisecond without a zoneinfo cache in the page cache). Each compiled
// expression keeps the zones it loaded; names from the data can vary, so
// the cache holds at most maxZones names, and a load past that is charged
// zoneLoadCost units of fuel.
const (
	maxZones     = 1024
	zoneLoadCost = 2000
)

// zoneCache is one expression's loaded time zones (and failed names).
type zoneCache struct {
	mu    sync.Mutex
	zones map[string]zoneEntry
}

type zoneEntry struct {
	loc *time.Location
	err error
}

// load returns the named zone, charging m for a load it cannot cache.
func (c *zoneCache) load(m *meter, name string) (*time.Location, error) {
	c.mu.Lock()
	e, ok := c.zones[name]
	c.mu.Unlock()
	if ok {
		return e.loc, e.err
	}
	loc, err := time.LoadLocation(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.zones) < maxZones {
		c.zones[name] = zoneEntry{loc, err}
	} else if cerr := m.spend(zoneLoadCost, "timezone"); cerr != nil {
		return nil, cerr
	}
	return loc, err
}

// meter is one item's fuel. The expression creates it in a let-variable,
// so each run has its own, also when runs share the program.
type meter struct{ left int }

func (m *meter) spend(n int, what string) error {
	m.left -= n
	if m.left < 0 {
		return fmt.Errorf("%s: the expression's work on this item exceeds the limit of %d units (iterations × loop body size, bytes built or scanned)", what, exprFuel)
	}
	return nil
}

// elemCost is what a builtin's pass over one element of a list or map
// costs, in units: builtins handle elements as interfaces (string() of a
// 500,000-number list takes 70 ms, 140 ns an element).
const elemCost = 8

// size is the number of elements of a string (bytes), list or map, 1 for
// other values.
func size(v any) int {
	switch v := v.(type) {
	case string:
		return len(v)
	case []any:
		return len(v)
	case map[string]any:
		return len(v)
	case nil:
		return 1
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
		return rv.Len()
	}
	return 1
}

// heavyCost is the units a byte costs for heavy builtins (fromJSON,
// regular expressions): parsing or compiling costs several times a copy.
const heavyCost = 8

// passCost is what one pass of a builtin over v costs: a byte of a string
// is a unit, an element of a list or map elemCost units.
func passCost(v any) int {
	if s, ok := v.(string); ok {
		return len(s)
	}
	return size(v) * elemCost
}

// meterFunctions are the functions the patched expression calls.
func meterFunctions() []expr.Option {
	zones := &zoneCache{zones: map[string]zoneEntry{}}
	return []expr.Option{
		// __segd_timezone(meter, name) is timezone(name), cached.
		expr.Function(tzF, func(args ...any) (any, error) {
			m, _ := args[0].(*meter)
			name, ok := args[1].(string)
			if m == nil || !ok {
				return nil, fmt.Errorf("timezone: want a zone name, got %T", args[1])
			}
			return zones.load(m, name)
		}),
		// __segd_date(meter, s, layout, zone) is date(s, layout, zone)
		// with the zone cached.
		expr.Function(dateF, func(args ...any) (any, error) {
			m, _ := args[0].(*meter)
			if loc, ok := args[1].(*time.Location); ok {
				// date(zone, s, layout), the zone from timezone()
				s, ok1 := args[2].(string)
				layout, ok2 := args[3].(string)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("date: want (zone, date, layout), got %T, %T, %T", args[1], args[2], args[3])
				}
				return time.ParseInLocation(layout, s, loc)
			}
			s, ok1 := args[1].(string)
			layout, ok2 := args[2].(string)
			name, ok3 := args[3].(string)
			if m == nil || !ok1 || !ok2 || !ok3 {
				return nil, fmt.Errorf("date: want (date, layout, zone) as strings, got %T, %T, %T", args[1], args[2], args[3])
			}
			loc, err := zones.load(m, name)
			if err != nil {
				return nil, err
			}
			return time.ParseInLocation(layout, s, loc)
		}),
		expr.Function(newMeterF, func(...any) (any, error) { return &meter{left: exprFuel}, nil }, new(func() *meter)),
		// __segd_charge(meter, what, value, how) passes value through
		// after charging it: how is 0 for a pass over it (passCost), 1
		// for a string scan only (lists are free), 2 for a heavy pass.
		expr.Function(chargeF, func(args ...any) (any, error) {
			m, _ := args[0].(*meter)
			what, _ := args[1].(string)
			how, _ := args[3].(int)
			if m == nil {
				return nil, errors.New("internal: no meter")
			}
			cost := passCost(args[2])
			switch how {
			case chargeScan:
				cost = 0
				if s, ok := args[2].(string); ok {
					cost = len(s)
				}
			case chargeHeavy:
				cost *= heavyCost
			}
			return args[2], m.spend(cost, what)
		}),
		// __segd_loop(meter, what, list, body) charges len(list) × body.
		expr.Function(loopF, func(args ...any) (any, error) {
			m, _ := args[0].(*meter)
			what, _ := args[1].(string)
			body, _ := args[3].(int)
			if m == nil {
				return nil, errors.New("internal: no meter")
			}
			return args[2], m.spend(size(args[2])*max(body, 1), what)
		}),
		// __segd_add(meter, a, b) is a + b, charging the string it builds.
		expr.Function(addF, func(args ...any) (any, error) {
			m, _ := args[0].(*meter)
			if m == nil {
				return nil, errors.New("internal: no meter")
			}
			if a, ok := args[1].(string); ok {
				if b, ok := args[2].(string); ok {
					if err := m.spend(len(a)+len(b), "+"); err != nil {
						return nil, err
					}
				}
			}
			return runtime.Add(args[1], args[2]), nil
		}),
	}
}

// compileBounded compiles src as expr.Compile does, with the work per item
// metered: after the type check (so that type errors read as expr reports
// them), the tree is patched to charge a meter created per run.
func compileBounded(src string, opts ...expr.Option) (*vm.Program, error) {
	cfg := conf.CreateNew()
	for _, op := range append(opts, meterFunctions()...) {
		op(cfg)
	}
	for _, name := range disabledBuiltins {
		expr.DisableBuiltin(name)(cfg)
	}
	for name := range cfg.Disabled {
		delete(cfg.Builtins, name)
	}
	cfg.Check()
	tree, err := exprparser.ParseWithConfig(src, cfg)
	if err != nil {
		return nil, toExprError(err)
	}
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, toExprError(err)
	}
	m := &metering{}
	ast.Walk(&tree.Node, m)
	if m.used {
		// Only an expression with something to charge pays for a meter.
		root := &ast.VariableDeclaratorNode{Name: meterVar, Value: call(tree.Node, newMeterF), Expr: tree.Node}
		root.SetLocation(tree.Node.Location())
		tree.Node = root
		if _, err := checker.Check(tree, cfg); err != nil {
			return nil, toExprError(err)
		}
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			err = fe.Bind(tree.Source)
		}
		return nil, toExprError(err)
	}
	prog, err := compiler.Compile(tree, cfg)
	return prog, toExprError(err)
}

// call is a call of the function name at the place of at.
func call(at ast.Node, name string, args ...ast.Node) *ast.CallNode {
	c := &ast.CallNode{Callee: &ast.IdentifierNode{Value: name}, Arguments: args}
	c.SetLocation(at.Location())
	c.Callee.SetLocation(at.Location())
	return c
}

func (v *metering) meterRef(at ast.Node) ast.Node {
	v.used = true
	n := &ast.IdentifierNode{Value: meterVar}
	n.SetLocation(at.Location())
	return n
}

func str(at ast.Node, s string) ast.Node {
	n := &ast.StringNode{Value: s}
	n.SetLocation(at.Location())
	return n
}

func integer(at ast.Node, i int) ast.Node {
	n := &ast.IntegerNode{Value: i}
	n.SetLocation(at.Location())
	return n
}

// How __segd_charge charges a value.
const (
	chargePass  = 0 // passCost: bytes of a string, 8 units an element
	chargeScan  = 1 // bytes of a string; lists and maps are free
	chargeHeavy = 2 // passCost × heavyCost
)

// charge wraps n so that its value is charged when it is computed.
func (v *metering) charge(n ast.Node, what string) ast.Node {
	how := chargePass
	switch {
	case heavy[what]:
		how = chargeHeavy
	case scans[what]:
		how = chargeScan
	}
	if isLiteral(n) {
		return n // bounded by the expression's size
	}
	return call(n, chargeF, v.meterRef(n), str(n, what), n, integer(n, how))
}

// metering is the visitor that inserts the charges. ast.Walk visits
// children first, so the node counts of loop bodies include their charges.
type metering struct {
	used bool // whether a charge was inserted
}

// Visit implements ast.Visitor.
func (v *metering) Visit(n *ast.Node) {
	switch node := (*n).(type) {
	case *ast.BuiltinNode:
		switch {
		case node.Name == "timezone" && len(node.Arguments) == 1:
			ast.Patch(n, call(node, tzF, v.meterRef(node), node.Arguments[0]))
		case node.Name == "date" && len(node.Arguments) == 3 && isStringTyped(node.Arguments[0]):
			// date(s, layout, zone) loads zone per call.
			a := node.Arguments
			ast.Patch(n, call(node, dateF, v.meterRef(node), a[0], a[1], a[2]))
		case iterating[node.Name] && len(node.Arguments) > 1:
			body := 1
			for _, a := range node.Arguments[1:] {
				body += countNodes(a)
			}
			arg := node.Arguments[0]
			node.Arguments[0] = call(arg, loopF, v.meterRef(arg), str(arg, node.Name), arg, integer(arg, body))
		case iterating[node.Name]: // sum(xs), count(xs): one pass
			node.Arguments[0] = v.charge(node.Arguments[0], node.Name)
		case scans[node.Name]:
			for i, a := range node.Arguments {
				node.Arguments[i] = v.charge(a, node.Name)
			}
		case linear[node.Name] || heavy[node.Name]:
			for i, a := range node.Arguments {
				if _, ok := a.(*ast.PredicateNode); !ok {
					node.Arguments[i] = v.charge(a, node.Name)
				}
			}
			ast.Patch(n, call(node, chargeF, v.meterRef(node), str(node, node.Name), node, integer(node, chargePass)))
		}
	case *ast.BinaryNode:
		switch node.Operator {
		case "+":
			if isNumber(node.Left) || isNumber(node.Right) {
				return // a number on either side cannot make a string
			}
			if t := node.Type(); t != nil && t.Kind() != reflect.String && t.Kind() != reflect.Interface {
				return // typed, and not a string
			}
			ast.Patch(n, call(node, addF, v.meterRef(node), node.Left, node.Right))
		case "in", "not in":
			node.Right = v.charge(node.Right, node.Operator)
		case "contains", "not contains", "startsWith", "endsWith":
			node.Left = v.charge(node.Left, node.Operator)
		case "matches", "not matches":
			node.Left = v.charge(node.Left, node.Operator)
			node.Right = v.charge(node.Right, node.Operator)
		}
	}
}

// isStringTyped reports whether the type check found n to be a string (or
// could not tell), as opposed to a time zone location.
func isStringTyped(n ast.Node) bool {
	t := n.Type()
	return t == nil || t.Kind() == reflect.String || t.Kind() == reflect.Interface
}

// countNodes is the size of a tree.
func countNodes(n ast.Node) int {
	c := 1
	for _, k := range children(n) {
		c += countNodes(k)
	}
	return c
}
