package rules

import (
	"fmt"
	"sort"
)

// Shadowed is a segment definition that a higher layer replaced (see
// CompileLayers).
type Shadowed struct {
	ID, File string
	Line     int
	// By is the file of the definition that won.
	By string
}

// CompileLayers compiles layers of rule files, the first layer on top: a
// segment id defined by a layer replaces its definitions in the layers
// below, which are reported as Shadowed (segd's rules admin API sits above
// --rules files this way). Within a layer ids must be unique, as in
// CompileSet; named predicates are shared by all layers. Every problem is
// reported, as an ErrorList.
func CompileLayers(layers [][]File, opts Options) (*RuleSet, []Shadowed, error) {
	if opts.MaxWindowDays == 0 {
		opts.MaxWindowDays = DefaultMaxWindowDays
	}
	set := &RuleSet{}
	var errs ErrorList
	var shadowed []Shadowed
	seen := map[string]*Segment{}
	seenPred := map[string]*NamedPredicate{}
	for _, layer := range layers {
		inLayer := map[string]*Segment{}
		for _, f := range layer {
			p := &parser{file: f.Name, opts: opts}
			segs := p.parseFile(f.Data)
			errs = append(errs, p.errs...)
			for _, s := range segs {
				if prev, dup := inLayer[s.ID]; dup {
					errs = append(errs, &Error{File: s.File, Line: s.Line, Segment: s.ID,
						Msg: fmt.Sprintf("id is already defined at %s:%d", prev.File, prev.Line)})
					continue
				}
				inLayer[s.ID] = s
				if prev, above := seen[s.ID]; above {
					shadowed = append(shadowed, Shadowed{ID: s.ID, File: s.File, Line: s.Line, By: prev.File})
					continue
				}
				seen[s.ID] = s
				set.Segments = append(set.Segments, s)
			}
			for _, np := range p.predicates {
				if prev, dup := seenPred[np.ID]; dup {
					errs = append(errs, &Error{File: np.File, Line: np.Line,
						Msg: fmt.Sprintf("predicate %q is already defined at %s:%d", np.ID, prev.File, prev.Line)})
					continue
				}
				seenPred[np.ID] = np
				set.Predicates = append(set.Predicates, np)
			}
		}
	}
	errs = append(errs, checkReferences(set.Segments, seen)...)
	if err := errs.err(); err != nil {
		return nil, shadowed, err
	}
	sort.Slice(set.Segments, func(i, j int) bool { return set.Segments[i].ID < set.Segments[j].ID })
	sort.Slice(set.Predicates, func(i, j int) bool { return set.Predicates[i].ID < set.Predicates[j].ID })
	return set, shadowed, nil
}

// ValidSegmentID reports whether id is a valid segment id: a letter, then
// up to 63 letters, digits, '_' or '-'.
func ValidSegmentID(id string) bool { return segmentID.MatchString(id) }
