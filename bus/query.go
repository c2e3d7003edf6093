package bus

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
)

// Query is a parsed set expression over segments, as segment.query takes
// it:
//
//	vip & !churned | new_7d
//	(vip | big_spenders_30d) - churned
//
// Operators, tightest first: `!` (not: every user seen who is not in the
// operand), `&` (and), `-` (and not), `|` (or); parentheses group. A segment
// id may itself contain '-' (`young-men`), so subtraction needs a space or a
// parenthesis before the '-' when it follows an id: `vip - churned`.
type Query struct {
	root     *queryNode
	segments []string
}

type queryOp byte

const (
	opSegment queryOp = iota
	opNot
	opAnd
	opOr
	opDiff
)

type queryNode struct {
	op    queryOp
	id    string       // opSegment
	pos   int          // column of the id, for errors
	kids  []*queryNode // operands, in order
	inner *queryNode   // opNot
}

// QueryError is a syntax error in a query, at a 1-based column (in
// characters).
type QueryError struct {
	Expr   string
	Column int
	Msg    string
}

// Error returns "column N: message".
func (e *QueryError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// Caret renders the expression with a caret under the column, for humans.
func (e *QueryError) Caret() string {
	return fmt.Sprintf(" | %s\n | %s^", e.Expr, strings.Repeat(".", max(e.Column-1, 0)))
}

// ParseQuery parses a set expression; the error is a *QueryError.
func ParseQuery(expr string) (*Query, error) {
	p := &queryParser{src: expr}
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
	q := &Query{root: root}
	seen := map[string]bool{}
	var walk func(n *queryNode)
	walk = func(n *queryNode) {
		switch n.op {
		case opSegment:
			if !seen[n.id] {
				seen[n.id] = true
				q.segments = append(q.segments, n.id)
			}
		case opNot:
			walk(n.inner)
		default:
			for _, k := range n.kids {
				walk(k)
			}
		}
	}
	walk(root)
	return q, nil
}

// Segments returns the segment ids the query names, in order of first use.
func (q *Query) Segments() []string { return q.segments }

// String renders the query fully parenthesized, showing how it was read.
func (q *Query) String() string { return q.root.String() }

func (n *queryNode) String() string {
	switch n.op {
	case opSegment:
		return n.id
	case opNot:
		return "!" + n.inner.String()
	}
	sep := map[queryOp]string{opAnd: " & ", opOr: " | ", opDiff: " - "}[n.op]
	parts := make([]string, len(n.kids))
	for i, k := range n.kids {
		parts[i] = k.String()
	}
	return "(" + strings.Join(parts, sep) + ")"
}

// Eval computes the query. bitmaps holds every segment Segments names; they
// are not modified. universe is the number of users seen: `!x` is the dense
// ids 0..universe-1 that are not in x.
func (q *Query) Eval(bitmaps map[string]*roaring.Bitmap, universe uint32) *roaring.Bitmap {
	return q.root.eval(bitmaps, uint64(universe))
}

// eval never returns a bitmap of bitmaps (it may return a fresh one that
// the caller then owns, or a shared one that the caller must not modify):
// to keep it simple, every result is fresh.
func (n *queryNode) eval(bm map[string]*roaring.Bitmap, universe uint64) *roaring.Bitmap {
	switch n.op {
	case opSegment:
		if b := bm[n.id]; b != nil {
			return b.Clone()
		}
		return roaring.New()
	case opNot:
		return roaring.Flip(n.inner.eval(bm, universe), 0, universe)
	case opOr:
		parts := make([]*roaring.Bitmap, len(n.kids))
		for i, k := range n.kids {
			parts[i] = k.eval(bm, universe)
		}
		return roaring.FastOr(parts...)
	case opDiff:
		acc := n.kids[0].eval(bm, universe)
		for _, k := range n.kids[1:] {
			acc.AndNot(k.eval(bm, universe))
		}
		return acc
	case opAnd:
		// Intersect the positive operands first, then subtract the negated
		// ones: a & !b is a - b, with no flip over the universe.
		var acc *roaring.Bitmap
		var negs []*queryNode
		for _, k := range n.kids {
			if k.op == opNot {
				negs = append(negs, k.inner)
				continue
			}
			if acc == nil {
				acc = k.eval(bm, universe)
			} else {
				acc.And(k.eval(bm, universe))
			}
		}
		if acc == nil {
			acc = roaring.New()
			acc.AddRange(0, universe)
		}
		for _, k := range negs {
			acc.AndNot(k.eval(bm, universe))
		}
		return acc
	}
	panic("unknown query op")
}

type tokKind byte

const (
	tokEOF tokKind = iota
	tokIdent
	tokAnd
	tokOr
	tokDiff
	tokNot
	tokLParen
	tokRParen
	tokBad
)

type token struct {
	kind tokKind
	text string
	col  int // 1-based, in characters
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end"
	case tokIdent:
		return fmt.Sprintf("segment %q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

type queryParser struct {
	src string
	off int // byte offset of the next token
	tok token
}

func (p *queryParser) col(off int) int { return utf8.RuneCountInString(p.src[:off]) + 1 }

func isIdentStart(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
func isIdentChar(r rune) bool  { return isIdentStart(r) || r >= '0' && r <= '9' || r == '_' || r == '-' }

// next reads the next token into p.tok.
func (p *queryParser) next() {
	for p.off < len(p.src) && (p.src[p.off] == ' ' || p.src[p.off] == '\t' || p.src[p.off] == '\n' || p.src[p.off] == '\r') {
		p.off++
	}
	start := p.off
	if start >= len(p.src) {
		p.tok = token{kind: tokEOF, col: p.col(start)}
		return
	}
	r, size := utf8.DecodeRuneInString(p.src[start:])
	kinds := map[rune]tokKind{'&': tokAnd, '|': tokOr, '-': tokDiff, '!': tokNot, '(': tokLParen, ')': tokRParen}
	if k, ok := kinds[r]; ok {
		p.off += size
		p.tok = token{kind: k, text: string(r), col: p.col(start)}
		return
	}
	if !isIdentStart(r) {
		p.off += size
		p.tok = token{kind: tokBad, text: string(r), col: p.col(start)}
		return
	}
	end := start
	for end < len(p.src) {
		r, size := utf8.DecodeRuneInString(p.src[end:])
		if !isIdentChar(r) {
			break
		}
		end += size
	}
	// A trailing '-' belongs to the operator: "vip-" then "churned" is
	// not a segment id.
	for end > start+1 && p.src[end-1] == '-' {
		end--
	}
	p.off = end
	p.tok = token{kind: tokIdent, text: p.src[start:end], col: p.col(start)}
}

func (p *queryParser) errorf(t token, format string, args ...any) *QueryError {
	return &QueryError{Expr: p.src, Column: t.col, Msg: fmt.Sprintf(format, args...)}
}

// binary parses operands joined by the operator tok, building op nodes.
func (p *queryParser) binary(tok tokKind, op queryOp, operand func() (*queryNode, error)) (*queryNode, error) {
	first, err := operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tok {
		return first, nil
	}
	n := &queryNode{op: op, kids: []*queryNode{first}}
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

func (p *queryParser) parseOr() (*queryNode, error) {
	return p.binary(tokOr, opOr, p.parseDiff)
}

func (p *queryParser) parseDiff() (*queryNode, error) {
	return p.binary(tokDiff, opDiff, p.parseAnd)
}

func (p *queryParser) parseAnd() (*queryNode, error) {
	return p.binary(tokAnd, opAnd, p.parseNot)
}

func (p *queryParser) parseNot() (*queryNode, error) {
	if p.tok.kind == tokNot {
		p.next()
		inner, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &queryNode{op: opNot, inner: inner}, nil
	}
	return p.parsePrimary()
}

func (p *queryParser) parsePrimary() (*queryNode, error) {
	t := p.tok
	switch t.kind {
	case tokIdent:
		p.next()
		return &queryNode{op: opSegment, id: t.text, pos: t.col}, nil
	case tokLParen:
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
		return nil, p.errorf(t, "unexpected character %q; segment ids start with a letter, operators are & | - ! ( )", t.text)
	}
	return nil, p.errorf(t, "expected a segment id, '!' or '(', found %s", t.describe())
}

// segmentColumn returns the column of the first use of segment, for a 404
// that points at it.
func (q *Query) segmentColumn(segment string) int {
	col := 0
	var walk func(n *queryNode)
	walk = func(n *queryNode) {
		if col != 0 {
			return
		}
		switch n.op {
		case opSegment:
			if n.id == segment {
				col = n.pos
			}
		case opNot:
			walk(n.inner)
		default:
			for _, k := range n.kids {
				walk(k)
			}
		}
	}
	walk(q.root)
	return col
}
