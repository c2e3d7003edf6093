package setexpr

import (
	"fmt"
	"unicode/utf8"
)

type tokKind byte

const (
	tokEOF tokKind = iota
	tokName
	tokAnd
	tokOr
	tokDiff
	tokNot
	tokLParen
	tokRParen
	tokBad
)

// token is one lexeme and the column (1-based, in characters) where it
// starts.
type token struct {
	kind tokKind
	text string
	col  int
}

// maxQuoted bounds how much of a name or character an error message
// repeats, so that a huge name does not make a huge message.
const maxQuoted = 64

func quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end"
	case tokName:
		return "segment " + quote(t.text)
	}
	return quote(t.text)
}

// lexer splits the source into tokens. It tracks the column as it goes,
// so that every token's column costs O(1): the source is read once.
type lexer struct {
	src string
	off int // byte offset of the next unread byte
	col int // column of src[off]
}

func isNameStart(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
func isNameChar(b byte) bool {
	return isNameStart(b) || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// next returns the next token.
func (l *lexer) next() token {
	for l.off < len(l.src) {
		switch l.src[l.off] {
		case ' ', '\t', '\n', '\r':
			l.off++
			l.col++
			continue
		}
		break
	}
	start, col := l.off, l.col
	if start >= len(l.src) {
		return token{kind: tokEOF, col: col}
	}
	var kind tokKind
	switch l.src[start] {
	case '&':
		kind = tokAnd
	case '|':
		kind = tokOr
	case '-':
		kind = tokDiff
	case '!':
		kind = tokNot
	case '(':
		kind = tokLParen
	case ')':
		kind = tokRParen
	default:
		if !isNameStart(l.src[start]) {
			_, size := utf8.DecodeRuneInString(l.src[start:])
			l.off += size
			l.col++
			return token{kind: tokBad, text: l.src[start:l.off], col: col}
		}
		end := start + 1
		for end < len(l.src) && isNameChar(l.src[end]) {
			end++
		}
		// A trailing '-' belongs to the operator: "vip-" then "churned"
		// is not a name.
		for end > start+1 && l.src[end-1] == '-' {
			end--
		}
		// Names are ASCII: one column a byte.
		l.col += end - start
		l.off = end
		return token{kind: tokName, text: l.src[start:end], col: col}
	}
	l.off++
	l.col++
	return token{kind: kind, text: l.src[start:l.off], col: col}
}
