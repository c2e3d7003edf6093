package rules

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	exprparser "github.com/expr-lang/expr/parser"
)

// The limits below bound the work one expression does on one item (event
// or profile). expr's VM cannot be interrupted, so an expression whose cost
// grows faster than its input is refused when the rule is compiled, with
// the place and the limit; what stays is linear in the item's size, and the
// VM's memory budget (exprMemoryBudget) and the concatenation cap
// (maxConcatLen) stop the rest at run time. docs/rules.md, "Limits of
// expressions", is the user's version of this list.
const (
	// maxIterDepth is how deeply iteration builtins (all, any, map,
	// filter, reduce, …) may nest. Two covers "any order has an item
	// that …"; a third level over one input is never needed.
	maxIterDepth = 2
	// maxRangeLen is the longest range a..b a rule may write. Both bounds
	// must be integer constants: a range sized by the data would let an
	// event choose the work.
	maxRangeLen = 10_000
)

// iterating are expr v1.17.8's builtins that run a closure per element
// (parser.predicates).
var iterating = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"count": true, "sum": true, "find": true, "findIndex": true, "findLast": true,
	"findLastIndex": true, "groupBy": true, "sortBy": true, "reduce": true,
}

// linear are the builtins whose cost grows with the size of an argument.
// Outside a loop they run once; inside a loop body they are refused when
// their arguments do not come from the current element, since they would
// redo the same O(n) work for each of n elements.
var linear = map[string]bool{
	"join": true, "sort": true, "uniq": true, "flatten": true, "concat": true,
	"reverse": true, "keys": true, "values": true, "toPairs": true, "fromPairs": true,
	"max": true, "min": true, "mean": true, "median": true, "toJSON": true,
	"fromJSON": true, "toBase64": true, "fromBase64": true, "split": true,
	"splitAfter": true, "replace": true, "repeat": true, "indexOf": true,
	"lastIndexOf": true, "trim": true, "trimPrefix": true, "trimSuffix": true,
	"upper": true, "lower": true, "take": true, "string": true, "date": true,
}

// scans are builtins that are cheap on lists but scan a string argument
// (len counts runes; int, float and duration parse). Inside a loop they
// are refused on a string from outside the current element, like linear
// ones; at run time only strings are charged.
var scans = map[string]bool{"len": true, "int": true, "float": true, "duration": true}

// heavy are the builtins and operators whose cost per byte or element is
// well above a copy's; they are charged heavyCost units per byte.
var heavy = map[string]bool{"fromJSON": true, "matches": true, "not matches": true}

// reservedPrefix starts the names of the functions and variable the
// run-time bounds add (exprbound.go); a rule may not use such names, so it
// cannot replace its own meter.
const reservedPrefix = "__segd_"

// costError is a refused expression, located at the costly node.
func costError(src string, n ast.Node, format string, args ...any) error {
	e := &file.Error{Location: n.Location(), Message: fmt.Sprintf(format, args...)}
	return toExprError(e.Bind(file.NewSource(src)))
}

// checkCost parses src as expr would and refuses what the limits above
// forbid. A source that does not parse is left to expr.Compile, which
// reports the syntax error.
func checkCost(src string) error {
	cfg := conf.CreateNew()
	cfg.MaxNodes = maxExprNodes
	for _, name := range disabledBuiltins {
		cfg.Disabled[name] = true
	}
	tree, err := exprparser.ParseWithConfig(src, cfg)
	if err != nil {
		return nil
	}
	c := &coster{src: src, inner: map[string]bool{}}
	return c.walk(tree.Node, 0)
}

// coster walks an expression tree. depth is the number of iteration bodies
// around the node; inner holds the let-variables declared inside one, which
// change with the current element.
type coster struct {
	src   string
	inner map[string]bool
}

func (c *coster) walk(n ast.Node, depth int) error {
	if v, ok := n.(*ast.VariableDeclaratorNode); ok {
		if strings.HasPrefix(v.Name, reservedPrefix) {
			return costError(c.src, v, "%s: names starting with %s are reserved for segd", v.Name, reservedPrefix)
		}
		if err := c.walk(v.Value, depth); err != nil {
			return err
		}
		if depth > 0 && c.varies(v.Value) {
			c.inner[v.Name] = true
		}
		return c.walk(v.Expr, depth)
	}
	// Children first, so that the innermost costly node is the one named.
	for _, k := range children(n) {
		d := depth
		if _, ok := k.(*ast.PredicateNode); ok {
			d++
		}
		if err := c.walk(k, d); err != nil {
			return err
		}
	}
	switch n := n.(type) {
	case *ast.BuiltinNode:
		return c.builtin(n, depth)
	case *ast.BinaryNode:
		return c.binary(n, depth)
	case *ast.IdentifierNode:
		if strings.HasPrefix(n.Value, reservedPrefix) {
			return costError(c.src, n, "%s: names starting with %s are reserved for segd", n.Value, reservedPrefix)
		}
	}
	return nil
}

func (c *coster) builtin(n *ast.BuiltinNode, depth int) error {
	switch {
	case iterating[n.Name]:
		if depth+1 > maxIterDepth {
			return costError(c.src, n, "%s: iterations nest %d deep; the limit is %d (each level multiplies the work per item)", n.Name, depth+1, maxIterDepth)
		}
		if depth > 0 && len(n.Arguments) > 0 && !c.varies(n.Arguments[0]) {
			return costError(c.src, n, "%s inside another iteration goes over data that is not the current element (#), so its work is multiplied by the outer list's length; compute it once outside the loop, or iterate over part of # (e.g. #.items)", n.Name)
		}
		if n.Name == "reduce" && hasPlus(n.Arguments[1]) && (len(n.Arguments) < 3 || !isNumber(n.Arguments[2])) {
			return costError(c.src, n, "reduce: an accumulator built with + must start from a number (e.g. reduce(xs, #acc + #.price, 0)); growing a string or list element by element costs the square of its length (use join(map(...)) or sum)")
		}
	case (linear[n.Name] || scans[n.Name]) && depth > 0:
		for _, a := range n.Arguments {
			if _, ok := a.(*ast.PredicateNode); ok || c.varies(a) || isLiteral(a) {
				continue
			}
			return costError(c.src, n, "%s inside an iteration works on data that is not the current element (#), so the same work is repeated for each element; compute it once with let before the loop", n.Name)
		}
	}
	return nil
}

func (c *coster) binary(n *ast.BinaryNode, depth int) error {
	switch n.Operator {
	case "..":
		lo, okLo := intConst(n.Left)
		hi, okHi := intConst(n.Right)
		if !okLo || !okHi {
			return costError(c.src, n, "a range must have integer constants as bounds (e.g. 1..10); one sized by the data lets an item choose the work")
		}
		if hi-lo+1 > maxRangeLen {
			return costError(c.src, n, "range %d..%d has %d elements; the limit is %d", lo, hi, hi-lo+1, maxRangeLen)
		}
	case "in", "not in":
		if depth > 0 && !c.varies(n.Right) && !isLiteral(n.Right) {
			return costError(c.src, n, "%s inside an iteration searches a list that is not the current element (#), once per element; write the list as a literal ([\"a\", \"b\"]) or test membership outside the loop", n.Operator)
		}
	case "contains", "not contains", "matches", "not matches":
		if depth > 0 && !c.varies(n.Left) && !isLiteral(n.Left) {
			return costError(c.src, n, "%s inside an iteration scans a string that is not the current element (#), once per element; test it outside the loop", n.Operator)
		}
		if depth > 0 && (n.Operator == "matches" || n.Operator == "not matches") && !isLiteral(n.Right) {
			return costError(c.src, n, "%s inside an iteration needs a literal pattern: a pattern from the data is compiled again for each element", n.Operator)
		}
	case "+":
		if depth > 0 && (!c.varies(n.Left) && !isLiteral(n.Left) || !c.varies(n.Right) && !isLiteral(n.Right)) {
			return costError(c.src, n, "+ inside an iteration with a value that is not the current element (#) copies that value once per element when it is a string; compare with - instead (#.price > 100 - props.shipping) or build it outside the loop")
		}
	}
	return nil
}

// varies reports whether n depends on the current element of an enclosing
// iteration: it reads #, #acc, #index or a let-variable declared in a
// loop body. The bodies of nested iterations do not count, since their
// pointer is their own element.
func (c *coster) varies(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.PointerNode:
		return true
	case *ast.IdentifierNode:
		return c.inner[n.Value]
	case *ast.PredicateNode:
		return false
	case *ast.MemberNode:
		// A field of the current element (#.price, .price) varies.
		if c.varies(n.Node) {
			return true
		}
	}
	for _, k := range children(n) {
		if c.varies(k) {
			return true
		}
	}
	return false
}

// hasPlus reports whether the body of a predicate contains a + outside
// nested iterations.
func hasPlus(n ast.Node) bool {
	if b, ok := n.(*ast.BinaryNode); ok && b.Operator == "+" {
		return true
	}
	for _, k := range children(n) {
		if hasPlus(k) {
			return true
		}
	}
	return false
}

// isNumber reports whether n is a number literal, possibly negated.
func isNumber(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.IntegerNode, *ast.FloatNode:
		return true
	case *ast.UnaryNode:
		return (n.Operator == "-" || n.Operator == "+") && isNumber(n.Node)
	}
	return false
}

// isLiteral reports whether n is a constant written in the expression: its
// size is bounded by the expression's node limit.
func isLiteral(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.BoolNode, *ast.NilNode:
		return true
	case *ast.UnaryNode:
		return isLiteral(n.Node)
	case *ast.ArrayNode:
		for _, e := range n.Nodes {
			if !isLiteral(e) {
				return false
			}
		}
		return true
	}
	return false
}

// intConst returns the value of an integer literal, possibly negated.
func intConst(n ast.Node) (int, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return n.Value, true
	case *ast.UnaryNode:
		if v, ok := intConst(n.Node); ok {
			switch n.Operator {
			case "-":
				return -v, true
			case "+":
				return v, true
			}
		}
	}
	return 0, false
}

// children lists the direct sub-nodes of n.
func children(n ast.Node) []ast.Node {
	switch n := n.(type) {
	case *ast.UnaryNode:
		return []ast.Node{n.Node}
	case *ast.BinaryNode:
		return []ast.Node{n.Left, n.Right}
	case *ast.ChainNode:
		return []ast.Node{n.Node}
	case *ast.MemberNode:
		return []ast.Node{n.Node, n.Property}
	case *ast.SliceNode:
		return nonNil(n.Node, n.From, n.To)
	case *ast.CallNode:
		return append([]ast.Node{n.Callee}, n.Arguments...)
	case *ast.BuiltinNode:
		return nonNil(append(append([]ast.Node{}, n.Arguments...), n.Map)...)
	case *ast.PredicateNode:
		return []ast.Node{n.Node}
	case *ast.ConditionalNode:
		return nonNil(n.Cond, n.Exp1, n.Exp2)
	case *ast.VariableDeclaratorNode:
		return []ast.Node{n.Value, n.Expr}
	case *ast.SequenceNode:
		return n.Nodes
	case *ast.ArrayNode:
		return n.Nodes
	case *ast.MapNode:
		return n.Pairs
	case *ast.PairNode:
		return []ast.Node{n.Key, n.Value}
	}
	return nil
}

func nonNil(ns ...ast.Node) []ast.Node {
	out := ns[:0]
	for _, n := range ns {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}
