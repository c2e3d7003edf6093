package setexpr

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits bound what Parse accepts. Each bounds the parse's time and
// memory (both linear in the source) and the evaluation's work (linear in
// the nodes); MaxDepth also bounds the parser's and evaluator's recursion,
// which would otherwise grow the goroutine stack until the process dies.
type Limits struct {
	// MaxLength is the longest source, in bytes.
	MaxLength int
	// MaxNodes is the most names and operators an expression may hold
	// (a name is a node, so is each !, and each run of one binary
	// operator).
	MaxNodes int
	// MaxDepth is the deepest nesting of parentheses and '!'.
	MaxDepth int
	// MaxNames is the most distinct names an expression may use (the
	// caller copies a set for each).
	MaxNames int
}

// DefaultLimits are the limits of Parse: far above any expression a
// person writes, far below what would hold up a server.
var DefaultLimits = Limits{MaxLength: 16 << 10, MaxNodes: 1000, MaxDepth: 64, MaxNames: 100}

// Error is a syntax error at a 1-based column (in characters) of Expr.
type Error struct {
	Expr   string
	Column int
	Msg    string
}

// Error returns "column N: message".
func (e *Error) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// Caret renders the expression with a caret under the column, for humans.
func (e *Error) Caret() string {
	return fmt.Sprintf(" | %s\n | %s^", e.Expr, strings.Repeat(".", max(e.Column-1, 0)))
}

type op byte

const (
	opName op = iota
	opNot
	opAnd
	opOr
	opDiff
)

type node struct {
	op    op
	name  string  // opName
	col   int     // column of the name, for errors
	kids  []*node // operands of a binary op, in order
	inner *node   // opNot
}

// Expr is a parsed expression.
type Expr struct {
	root  *node
	names []string
	cols  map[string]int // column of each name's first use
	nodes int
}

// Parse parses src within DefaultLimits; the error is an *Error.
func Parse(src string) (*Expr, error) { return DefaultLimits.Parse(src) }

// Parse parses src within l; the error is an *Error. A limit of 0 or less
// is no limit.
func (l Limits) Parse(src string) (*Expr, error) {
	if l.MaxLength > 0 && len(src) > l.MaxLength {
		return nil, &Error{Expr: src, Column: utf8.RuneCountInString(src[:l.MaxLength]) + 1,
			Msg: fmt.Sprintf("the expression is %d bytes long; at most %d", len(src), l.MaxLength)}
	}
	p := &parser{lex: lexer{src: src, col: 1}, limits: l}
	p.next()
	if p.tok.kind == tokEOF {
		return nil, p.errorf(p.tok, "the expression is empty; want e.g. vip & !churned")
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		if p.tok.kind == tokRParen {
			return nil, p.errorf(p.tok, "unmatched ')'")
		}
		return nil, p.errorf(p.tok, "expected an operator (&, |, -) before %s", p.tok.describe())
	}
	return &Expr{root: root, names: p.names, cols: p.cols, nodes: p.nodes}, nil
}

// Names returns the names the expression uses, in order of first use.
func (x *Expr) Names() []string { return x.names }

// Column returns the column of the first use of name, 0 if it is not used.
func (x *Expr) Column(name string) int { return x.cols[name] }

// Nodes returns the number of nodes, as Limits.MaxNodes counts them.
func (x *Expr) Nodes() int { return x.nodes }

// String renders the expression fully parenthesized, showing how it was
// read.
func (x *Expr) String() string {
	var b strings.Builder
	x.root.write(&b)
	return b.String()
}

func (n *node) write(b *strings.Builder) {
	switch n.op {
	case opName:
		b.WriteString(n.name)
		return
	case opNot:
		b.WriteByte('!')
		n.inner.write(b)
		return
	}
	sep := map[op]string{opAnd: " & ", opOr: " | ", opDiff: " - "}[n.op]
	b.WriteByte('(')
	for i, k := range n.kids {
		if i > 0 {
			b.WriteString(sep)
		}
		k.write(b)
	}
	b.WriteByte(')')
}

// parser is a recursive descent parser with one token of lookahead. Its
// recursion is bounded by limits.MaxDepth: only '(' and '!' nest.
type parser struct {
	lex    lexer
	tok    token
	limits Limits
	nodes  int
	depth  int
	names  []string
	cols   map[string]int
}

func (p *parser) next() { p.tok = p.lex.next() }

func (p *parser) errorf(t token, format string, args ...any) *Error {
	return &Error{Expr: p.lex.src, Column: t.col, Msg: fmt.Sprintf(format, args...)}
}

// newNode counts a node against the limit, at the token that made it.
func (p *parser) newNode(t token, n *node) (*node, error) {
	p.nodes++
	if p.limits.MaxNodes > 0 && p.nodes > p.limits.MaxNodes {
		return nil, p.errorf(t, "the expression has more than %d names and operators", p.limits.MaxNodes)
	}
	return n, nil
}

// enter counts a level of nesting at t; leave undoes it.
func (p *parser) enter(t token) error {
	p.depth++
	if p.limits.MaxDepth > 0 && p.depth > p.limits.MaxDepth {
		return p.errorf(t, "parentheses and '!' nest more than %d deep", p.limits.MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// binary parses operands joined by the operator tok into one node of op.
func (p *parser) binary(tok tokKind, o op, operand func() (*node, error)) (*node, error) {
	first, err := operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tok {
		return first, nil
	}
	n, err := p.newNode(p.tok, &node{op: o, kids: []*node{first}})
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tok {
		p.next()
		k, err := operand()
		if err != nil {
			return nil, err
		}
		n.kids = append(n.kids, k)
	}
	return n, nil
}

func (p *parser) parseOr() (*node, error) { return p.binary(tokOr, opOr, p.parseDiff) }

func (p *parser) parseDiff() (*node, error) { return p.binary(tokDiff, opDiff, p.parseAnd) }

func (p *parser) parseAnd() (*node, error) { return p.binary(tokAnd, opAnd, p.parseNot) }

func (p *parser) parseNot() (*node, error) {
	if p.tok.kind != tokNot {
		return p.parsePrimary()
	}
	t := p.tok
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer p.leave()
	n, err := p.newNode(t, &node{op: opNot})
	if err != nil {
		return nil, err
	}
	p.next()
	if n.inner, err = p.parseNot(); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) parsePrimary() (*node, error) {
	t := p.tok
	switch t.kind {
	case tokName:
		n, err := p.newNode(t, &node{op: opName, name: t.text, col: t.col})
		if err != nil {
			return nil, err
		}
		if _, ok := p.cols[t.text]; !ok {
			if p.limits.MaxNames > 0 && len(p.names) == p.limits.MaxNames {
				return nil, p.errorf(t, "the expression names more than %d distinct segments", p.limits.MaxNames)
			}
			if p.cols == nil {
				p.cols = map[string]int{}
			}
			p.cols[t.text] = t.col
			p.names = append(p.names, t.text)
		}
		p.next()
		return n, nil
	case tokLParen:
		if err := p.enter(t); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		if p.tok.kind == tokRParen {
			return nil, p.errorf(p.tok, "empty parentheses; want a segment id or an expression")
		}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.errorf(p.tok, "expected ')' to close the '(' at column %d, found %s", t.col, p.tok.describe())
		}
		p.next()
		return n, nil
	case tokBad:
		return nil, p.errorf(t, "unexpected character %s; segment ids start with a letter, operators are & | - ! ( )", quote(t.text))
	}
	return nil, p.errorf(t, "expected a segment id, '!' or '(', found %s", t.describe())
}
