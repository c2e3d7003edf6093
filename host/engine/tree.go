package engine

import "github.com/segd/segd/rules"

// node is a rule's condition tree with each leaf's running state in place,
// so that judging a user walks pointers, not map lookups.
type node struct {
	op   nodeOp
	kids []*node
	leaf leaf          // opLeaf
	ref  *segmentState // opRef
}

type nodeOp int

const (
	opAll nodeOp = iota
	opAny
	opNot
	opLeaf
	opRef
)

// buildTree mirrors a condition; leaves come from buildLeaves.
func (e *Engine) buildTree(c rules.Condition) *node {
	switch c := c.(type) {
	case *rules.All:
		return &node{op: opAll, kids: e.buildTrees(c.Of)}
	case *rules.Any:
		return &node{op: opAny, kids: e.buildTrees(c.Of)}
	case *rules.Not:
		return &node{op: opNot, kids: []*node{e.buildTree(c.Of)}}
	case *rules.InSegment:
		return &node{op: opRef, ref: e.ids()[c.Segment]}
	}
	return &node{op: opLeaf, leaf: e.leafOf[c]}
}

func (e *Engine) buildTrees(cs []rules.Condition) []*node {
	out := make([]*node, len(cs))
	for i, c := range cs {
		out[i] = e.buildTree(c)
	}
	return out
}

// holds evaluates the tree for user u at time now; segments it reads are
// seen with this step's changes.
func (n *node) holds(u uint32, now int64, changes changeSet) bool {
	switch n.op {
	case opAll:
		for _, k := range n.kids {
			if !k.holds(u, now, changes) {
				return false
			}
		}
		return true
	case opAny:
		for _, k := range n.kids {
			if k.holds(u, now, changes) {
				return true
			}
		}
		return false
	case opNot:
		return !n.kids[0].holds(u, now, changes)
	case opRef:
		return changes.member(n.ref, u)
	}
	return n.leaf.holds(u, now)
}

// empty evaluates the tree for a user no leaf keeps anything for; segments
// it reads must have their empty value already (dependency order).
func (n *node) empty() bool {
	switch n.op {
	case opAll:
		for _, k := range n.kids {
			if !k.empty() {
				return false
			}
		}
		return true
	case opAny:
		for _, k := range n.kids {
			if k.empty() {
				return true
			}
		}
		return false
	case opNot:
		return !n.kids[0].empty()
	case opRef:
		return n.ref.empty
	}
	return n.leaf.empty()
}
