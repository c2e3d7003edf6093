// Package setexpr parses and evaluates set algebra over named sets of
// dense ids, as segd's segment.query takes it:
//
//	vip & !churned | new_7d
//	(vip | big_spenders_30d) - churned
//
// Operators, tightest first: `!` (not: every id of the universe that is
// not in the operand), `&` (and), `-` (and not), `|` (or); parentheses
// group. A name starts with an ASCII letter and goes on with letters,
// digits, '_' and '-' (`young-men`); a trailing '-' is the operator, so
// subtraction after a name needs a space or a parenthesis before the '-'
// when the next name follows at once: `vip - churned`.
//
// Every expression comes from a client, so parsing is bounded the way
// expr-lang/expr bounds its parser: Limits caps the source length, the
// number of nodes and the nesting depth, and the lexer and parser run in
// time linear in the source. Errors are *Error values that carry the
// 1-based column (in characters) of the problem. Evaluation works on
// roaring bitmaps, never modifies the operands, and stops between nodes
// when its context is done.
package setexpr
