package setexpr

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
)

// Eval computes the expression. sets holds the sets its names denote (a
// missing or nil set is empty); they are not modified. universe is the
// number of ids: `!x` is the ids 0..universe-1 that are not in x. Eval
// checks ctx between nodes and returns its error once it is done.
func (x *Expr) Eval(ctx context.Context, sets map[string]*roaring.Bitmap, universe uint64) (*roaring.Bitmap, error) {
	e := evaluator{ctx: ctx, sets: sets, universe: universe}
	bm, owned, err := e.eval(x.root)
	if err != nil {
		return nil, err
	}
	if !owned {
		bm = bm.Clone()
	}
	return bm, nil
}

type evaluator struct {
	ctx      context.Context
	sets     map[string]*roaring.Bitmap
	universe uint64
	empty    *roaring.Bitmap
}

// eval returns n's set and whether the caller owns it: a name's set is
// shared, not copied, until an operator needs to modify it.
func (e *evaluator) eval(n *node) (*roaring.Bitmap, bool, error) {
	if err := e.ctx.Err(); err != nil {
		return nil, false, err
	}
	switch n.op {
	case opName:
		if b := e.sets[n.name]; b != nil {
			return b, false, nil
		}
		if e.empty == nil {
			e.empty = roaring.New()
		}
		return e.empty, false, nil
	case opNot:
		inner, _, err := e.eval(n.inner)
		if err != nil {
			return nil, false, err
		}
		return roaring.Flip(inner, 0, e.universe), true, nil
	case opOr:
		parts := make([]*roaring.Bitmap, len(n.kids))
		for i, k := range n.kids {
			b, _, err := e.eval(k)
			if err != nil {
				return nil, false, err
			}
			parts[i] = b
		}
		return roaring.FastOr(parts...), true, nil
	case opDiff:
		acc, owned, err := e.eval(n.kids[0])
		if err != nil {
			return nil, false, err
		}
		if !owned {
			acc = acc.Clone()
		}
		for _, k := range n.kids[1:] {
			b, _, err := e.eval(k)
			if err != nil {
				return nil, false, err
			}
			acc.AndNot(b)
		}
		return acc, true, nil
	case opAnd:
		return e.and(n)
	}
	panic(fmt.Sprintf("setexpr: unknown op %d", n.op))
}

// and intersects the positive operands first, then subtracts the negated
// ones: a & !b is a - b, with no flip over the universe.
func (e *evaluator) and(n *node) (*roaring.Bitmap, bool, error) {
	var acc *roaring.Bitmap
	for _, k := range n.kids {
		if k.op == opNot {
			continue
		}
		b, owned, err := e.eval(k)
		if err != nil {
			return nil, false, err
		}
		switch {
		case acc != nil:
			acc.And(b)
		case owned:
			acc = b
		default:
			acc = b.Clone()
		}
	}
	if acc == nil {
		acc = roaring.New()
		acc.AddRange(0, e.universe)
	}
	for _, k := range n.kids {
		if k.op != opNot {
			continue
		}
		b, _, err := e.eval(k.inner)
		if err != nil {
			return nil, false, err
		}
		acc.AndNot(b)
	}
	return acc, true, nil
}
