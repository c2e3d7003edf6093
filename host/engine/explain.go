package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/rules"
)

// UserState is what the engine keeps about one user.
type UserState struct {
	// Known is false for a user the engine never saw.
	Known bool
	// Profile is a copy of the user's profile attributes ({} for none).
	Profile map[string]any
	// Explain is the value of each condition of the asked segment's rule
	// for the user now; nil when no segment was asked.
	Explain *api.Explanation
}

// UserState reads a user's profile and, when segment is not empty, the
// value of each condition of its rule for the user when the clock reads
// what it read at the last step. It changes nothing: it runs on the writer
// (after the messages applied before it, before the next), because the
// leaves' state is the writer's. An unknown segment is an error wrapping
// ingest.ErrNotFound.
func (e *Engine) UserState(ctx context.Context, user, segment string) (UserState, error) {
	var seg *segmentState
	if segment != "" {
		var ok bool
		if seg, ok = e.ids()[segment]; !ok {
			return UserState{}, errNotFound(segment)
		}
	}
	var out UserState
	err := e.Do(ctx, func() error {
		out = e.userState(user, seg)
		return nil
	})
	if err != nil {
		// Do returns when ctx ends even if fn runs on: out is fn's alone.
		return UserState{}, err
	}
	return out, nil
}

// userState is UserState on the writer.
func (e *Engine) userState(user string, seg *segmentState) UserState {
	out := UserState{Profile: map[string]any{}}
	id, known := e.users.lookup(user)
	out.Known = known
	if known && e.profiles.has(id) {
		out.Profile = e.profiles.profile(id)
	}
	if seg == nil {
		return out
	}
	ex := &api.Explanation{Segment: seg.seg.ID}
	if known {
		ex.Member = seg.members.Contains(id)
	}
	if seg.tree == nil {
		// A static segment: its members are uploaded, not judged.
		ex.Holds = ex.Member
		ex.Conditions = []api.ConditionValue{{Condition: "static: members are uploaded", Holds: ex.Member,
			Text: fmt.Sprintf("static segment: the user is %sin the uploaded members", map[bool]string{true: "", false: "not "}[ex.Member])}}
		out.Explain = ex
		return out
	}
	if known {
		ex.Holds = seg.tree.holds(id, e.now, nil)
	} else {
		ex.Holds = seg.empty
	}
	e.explain(seg.seg.Condition, seg.tree, id, known, 0, &ex.Conditions)
	out.Explain = ex
	return out
}

// explain appends the value of condition c (whose running state is n) for
// user u, then those of its parts. A user the engine never saw has every
// leaf's empty value.
func (e *Engine) explain(c rules.Condition, n *node, u uint32, known bool, depth int, out *[]api.ConditionValue) {
	holds := n.empty()
	if known {
		holds = n.holds(u, e.now, nil)
	}
	cv := api.ConditionValue{Depth: depth, Holds: holds}
	verdict := holdsWord(holds)
	switch c := c.(type) {
	case *rules.All:
		cv.Condition, cv.Text = "all of", "all of the following: "+verdict
	case *rules.Any:
		cv.Condition, cv.Text = "any of", "any of the following: "+verdict
	case *rules.Not:
		cv.Condition, cv.Text = "not", "not the following: "+verdict
	case *rules.InSegment:
		cv.Condition = "in_segment " + c.Segment
		cv.Text = fmt.Sprintf("in segment %s: %s", c.Segment, verdict)
	case *rules.Did:
		cv.Condition = fmt.Sprintf("did %s: %s %s, %s", stepText(c.Step), c.Aggregate, c.Compare, c.Window.Text)
		var x float64
		var ok bool
		if known {
			x, ok = n.leaf.(*didLeaf).value(u, e.now)
		} else { // no events: avg, min and max are undefined, the others 0
			ok = c.Aggregate.Func != rules.AggAvg && c.Aggregate.Func != rules.AggMin && c.Aggregate.Func != rules.AggMax
		}
		what := fmt.Sprintf("%s %s in %s", strings.Join(c.Events, "|"), c.Aggregate, c.Window.Text)
		if ok {
			cv.Value = &x
			cv.Text = fmt.Sprintf("%s = %s (%s %s)", what, strconv.FormatFloat(x, 'g', -1, 64), c.Compare, verdict)
		} else {
			cv.Text = fmt.Sprintf("%s is undefined: no matching events (%s %s)", what, c.Compare, verdict)
		}
	case *rules.Sequence:
		steps := make([]string, len(c.Steps))
		for i, s := range c.Steps {
			steps[i] = stepText(s)
		}
		cv.Condition = fmt.Sprintf("sequence %s within %s, %s", strings.Join(steps, " then "), c.Within, c.Window.Text)
		if c.ThenNot != nil {
			cv.Condition = fmt.Sprintf("drop-off: %s then not %s within %s, %s", steps[0], stepText(*c.ThenNot), c.Within, c.Window.Text)
		}
		cv.Text = cv.Condition + ": " + verdict
	case *rules.ProfileCondition:
		cv.Condition = "profile: " + c.Source
		cv.Text = fmt.Sprintf("profile %s: %s", c.Source, verdict)
	}
	*out = append(*out, cv)
	var kids []rules.Condition
	switch c := c.(type) {
	case *rules.All:
		kids = c.Of
	case *rules.Any:
		kids = c.Of
	case *rules.Not:
		kids = []rules.Condition{c.Of}
	}
	for i, k := range kids {
		e.explain(k, n.kids[i], u, known, depth+1, out)
	}
}

func holdsWord(b bool) string {
	if b {
		return "holds"
	}
	return "does not hold"
}

// stepText writes a step's events and filter as a rule does.
func stepText(s rules.Step) string {
	t := strings.Join(s.Events, "|")
	if s.WhereSource != "" {
		t += " where " + s.WhereSource
	}
	return t
}
