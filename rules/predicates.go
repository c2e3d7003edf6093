package rules

import "iter"

// Predicates yields each predicate of c's tree, parents first: a Did's
// Where, a Sequence's step Wheres then its ThenNot's Where, and a
// ProfileCondition's Predicate. Nil predicates (a step with no where) are
// left out. The values are EventPredicates or ProfilePredicates; callers
// look for the optional interfaces they care about (io.Closer, EvalStats,
// a plugin's name), which is why they come as any.
//
// It is the one walk for every pass over a rule's predicates (releasing
// plugin pools, summing evaluation errors, listing the plugins a rule
// names), so a new place a predicate can sit is added here once.
func Predicates(c Condition) iter.Seq[any] {
	return func(yield func(any) bool) {
		eachPredicate(c, yield)
	}
}

// eachPredicate is Predicates' walk; it reports false once yield asked to
// stop.
func eachPredicate(c Condition, yield func(any) bool) bool {
	step := func(st *Step) bool {
		if st == nil || st.Where == nil {
			return true
		}
		return yield(st.Where)
	}
	switch c := c.(type) {
	case *All:
		for _, k := range c.Of {
			if !eachPredicate(k, yield) {
				return false
			}
		}
	case *Any:
		for _, k := range c.Of {
			if !eachPredicate(k, yield) {
				return false
			}
		}
	case *Not:
		return eachPredicate(c.Of, yield)
	case *Did:
		return step(&c.Step)
	case *Sequence:
		for i := range c.Steps {
			if !step(&c.Steps[i]) {
				return false
			}
		}
		return step(c.ThenNot)
	case *ProfileCondition:
		if c.Predicate != nil {
			return yield(c.Predicate)
		}
	}
	return true
}
