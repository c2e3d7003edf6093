package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options configure compilation.
type Options struct {
	// Plugins resolves `plugin:` predicates; with nil, a rule that names a
	// plugin is an error.
	Plugins Plugins
	// MaxWindowDays caps windows at the retention the engine keeps; 0 means
	// DefaultMaxWindowDays. `ever` means this many days.
	MaxWindowDays int
	// Schema, if set, checks event names and property types.
	Schema *Schema
	// CheckEvent, if set, is asked about every event name a rule of file
	// names; an error is reported at the name, as "unknown event ...".
	// segment.preview uses it to refuse events segd has never seen, which
	// would silently match nobody.
	CheckEvent func(file, event string) error
}

// DefaultMaxWindowDays is the longest window allowed when Options leave it
// unset: the default event retention.
const DefaultMaxWindowDays = 90

// File is one rule file's name and content. Compile takes files rather than
// paths because this package does no I/O.
type File struct {
	Name string
	Data []byte
}

// Compile parses, validates and compiles every segment of every file; see
// CompileSet, which also returns the named predicates.
func Compile(files []File, opts Options) ([]*Segment, error) {
	set, err := CompileSet(files, opts)
	if err != nil {
		return nil, err
	}
	return set.Segments, nil
}

// RuleSet is what a set of rule files defines.
type RuleSet struct {
	// Segments are ordered by id.
	Segments []*Segment
	// Predicates are the named event predicates, ordered by id.
	Predicates []*NamedPredicate
}

// CompileSet parses, validates and compiles every segment and named
// predicate of every file. It reports every problem it finds, as an
// ErrorList, rather than only the first; ids must be unique across all
// files.
func CompileSet(files []File, opts Options) (*RuleSet, error) {
	// One layer shadows nothing: within a layer ids must be unique.
	set, _, err := CompileLayers([][]File{files}, opts)
	return set, err
}

// checkReferences reports in_segment references to unknown segments and
// cycles, naming the cycle.
func checkReferences(all []*Segment, byID map[string]*Segment) ErrorList {
	var errs ErrorList
	for _, s := range all {
		for _, r := range s.References {
			if byID[r] == nil {
				errs = append(errs, &Error{File: s.File, Line: s.Line, Segment: s.ID,
					Msg: fmt.Sprintf("refers to segment %q, which is not defined", r)})
			}
		}
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(id string) bool
	visit = func(id string) bool {
		switch state[id] {
		case visiting:
			i := slices.Index(path, id)
			cycle := append(slices.Clone(path[i:]), id)
			s := byID[id]
			errs = append(errs, &Error{File: s.File, Line: s.Line, Segment: id,
				Msg: "segments refer to each other in a cycle: " + strings.Join(cycle, " → ")})
			return false
		case done:
			return true
		}
		state[id] = visiting
		path = append(path, id)
		ok := true
		if s := byID[id]; s != nil {
			for _, r := range s.References {
				if byID[r] != nil && !visit(r) {
					ok = false
					break
				}
			}
		}
		path = path[:len(path)-1]
		state[id] = done
		return ok
	}
	for _, s := range all {
		if state[s.ID] == unvisited {
			visit(s.ID)
		}
	}
	return errs
}

var segmentID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// parser walks YAML nodes, rather than decoding into structs, so that every
// error can name its line, column, segment and field.
type parser struct {
	file       string
	opts       Options
	errs       ErrorList
	seg        string // the segment (or predicate) being parsed, for messages
	kind       string // what seg names, when it is not a segment
	predicates []*NamedPredicate
}

func (p *parser) fail(n *yaml.Node, segment, field, format string, args ...any) {
	e := &Error{File: p.file, Segment: segment, Kind: p.kind, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

func (p *parser) parseFile(data []byte) []*Segment {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var segs []*Segment
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.errs = append(p.errs, &Error{File: p.file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
			return segs
		}
		if emptyDocument(&doc) {
			continue
		}
		segs = append(segs, p.parseDocument(doc.Content[0])...)
	}
	if len(segs) == 0 && len(p.predicates) == 0 && len(p.errs) == 0 {
		p.fail(nil, "", "", "defines no segment")
	}
	return segs
}

// Document is one non-empty YAML document of a file.
type Document struct {
	// Line is where it starts.
	Line int
	// Depth is how deeply its mappings and lists nest (a scalar is 1).
	Depth int
}

// Documents lists the non-empty YAML documents of data (separated by
// "---"), for callers that take one segment and must say where the others
// are, or bound the nesting of what they compile (segment.preview). It
// reports invalid YAML as CompileSet does.
func Documents(file string, data []byte) ([]Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []Document
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, ErrorList{&Error{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
		}
		if !emptyDocument(&doc) {
			docs = append(docs, Document{Line: doc.Content[0].Line, Depth: depth(doc.Content[0])})
		}
	}
}

// depth is how deeply n nests; the YAML decoder bounds it (10,000).
func depth(n *yaml.Node) int {
	d := 0
	for _, c := range n.Content {
		d = max(d, depth(c))
	}
	return d + 1
}

// emptyDocument reports a document with nothing in it, such as what
// follows a trailing "---": it defines nothing, and is no error.
func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == ""
}

// parseDocument accepts `segments: [...]`, a bare list of segments, or a
// single segment.
func (p *parser) parseDocument(n *yaml.Node) []*Segment {
	var items []*yaml.Node
	switch {
	case n.Kind == yaml.SequenceNode:
		items = n.Content
	case n.Kind == yaml.MappingNode && (lookup(n, "segments") != nil || lookup(n, "predicates") != nil):
		for i := 0; i < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch k.Value {
			case "segments":
				if v.Kind != yaml.SequenceNode {
					p.fail(v, "", "segments", "want a list of segments, got %s", describe(v))
					continue
				}
				items = v.Content
			case "predicates":
				p.parsePredicates(v)
			default:
				p.fail(k, "", "", "unknown top-level field %q (a file holds segments: and predicates:, or one segment)", k.Value)
			}
		}
	case n.Kind == yaml.MappingNode:
		items = []*yaml.Node{n}
	default:
		p.fail(n, "", "", "want a segment or a list of segments, got %s", describe(n))
		return nil
	}
	var segs []*Segment
	for _, item := range items {
		if s := p.parseSegment(item); s != nil {
			segs = append(segs, s)
		}
	}
	return segs
}

// parsePredicates reads named event predicates:
//
//	predicates:
//	  - id: big_checkout
//	    event: checkout
//	    where: props.amount >= 500
func (p *parser) parsePredicates(n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "", "predicates", "want a list of named predicates, got %s", describe(n))
		return
	}
	for _, item := range n.Content {
		f := p.fields(item, "predicates", "id", "description", "event", "events", "where")
		if f == nil {
			continue
		}
		np := &NamedPredicate{File: p.file, Line: item.Line}
		switch id := f["id"]; {
		case id == nil:
			p.fail(item, "", "predicates.id", "is missing")
		case id.Kind != yaml.ScalarNode || !segmentID.MatchString(id.Value):
			p.fail(id, "", "predicates.id", "%s is not a valid id: use letters, digits, '_' and '-', starting with a letter", describe(id))
		default:
			np.ID = id.Value
		}
		p.seg, p.kind = np.ID, "predicate"
		before := len(p.errs)
		if d := f["description"]; d != nil {
			np.Description = p.str(d, np.ID, "description")
		}
		np.Step = p.step(item, f, "predicate")
		if len(p.errs) == before && np.ID != "" {
			p.predicates = append(p.predicates, np)
		}
	}
	p.seg, p.kind = "", ""
}

func (p *parser) parseSegment(n *yaml.Node) *Segment {
	if n.Kind != yaml.MappingNode {
		p.fail(n, "", "", "want a segment (a mapping with id and a condition), got %s", describe(n))
		return nil
	}
	s := &Segment{File: p.file, Line: n.Line}
	if src, err := yaml.Marshal(n); err == nil {
		s.Source = string(src)
	}
	idNode := lookup(n, "id")
	switch {
	case idNode == nil:
		p.fail(n, "", "id", "is missing")
	case idNode.Kind != yaml.ScalarNode || !segmentID.MatchString(idNode.Value):
		p.fail(idNode, "", "id", "%s is not a valid id: use letters, digits, '_' and '-', starting with a letter, at most 64", describe(idNode))
	default:
		s.ID = idNode.Value
	}
	p.seg = s.ID
	before := len(p.errs)
	var conditions []string
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "id":
		case "description":
			s.Description = p.str(v, s.ID, "description")
		case "static":
			conditions = append(conditions, k.Value)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Value != "true" {
				p.fail(v, s.ID, "static", "want true (a segment whose members are uploaded), got %s", describe(v))
			}
			s.Static = true
		default:
			if !conditionKeys[k.Value] {
				p.fail(k, s.ID, "", "unknown field %q (known: id, description, static, %s)", k.Value, conditionKeyList)
				continue
			}
			conditions = append(conditions, k.Value)
			s.Condition = p.conditionOf(k.Value, v, k.Value)
		}
	}
	switch len(conditions) {
	case 0:
		p.fail(n, s.ID, "", "needs a condition (%s) or static: true", conditionKeyList)
	case 1:
	default:
		p.fail(n, s.ID, "", "has %s; a segment has one condition: combine several with all or any", strings.Join(conditions, " and "))
	}
	if len(p.errs) > before || s.ID == "" {
		return nil
	}
	refs := map[string]bool{}
	Walk(s.Condition, func(c Condition) {
		if in, ok := c.(*InSegment); ok {
			refs[in.Segment] = true
		}
	})
	for r := range refs {
		s.References = append(s.References, r)
	}
	sort.Strings(s.References)
	return s
}

func (p *parser) eventPredicate(n *yaml.Node, seg, field string) (EventPredicate, string) {
	if ref, ok := p.pluginRef(n, seg, field); ok {
		if ref == nil {
			return nil, ""
		}
		pred, err := p.resolveEventPlugin(*ref)
		if err != nil {
			p.fail(n, seg, field, "%v", err)
			return nil, ""
		}
		return pred, "plugin " + ref.Name
	}
	src := p.str(n, seg, field)
	if src == "" {
		return nil, ""
	}
	prog, err := compileEventExpr(src)
	if err != nil {
		p.exprFail(n, seg, field, err)
		return nil, ""
	}
	return newExprEventPredicate(src, prog), src
}

func (p *parser) resolveEventPlugin(ref PluginRef) (EventPredicate, error) {
	if p.opts.Plugins == nil {
		return nil, fmt.Errorf("plugin %q: no plugins are loaded (start segd with --plugins DIR)", ref.Name)
	}
	return p.opts.Plugins.EventPredicate(ref)
}

func (p *parser) resolveProfilePlugin(ref PluginRef) (ProfilePredicate, error) {
	if p.opts.Plugins == nil {
		return nil, fmt.Errorf("plugin %q: no plugins are loaded (start segd with --plugins DIR)", ref.Name)
	}
	return p.opts.Plugins.ProfilePredicate(ref)
}

// pluginRef reads `{plugin: NAME, params: {...}}`. ok reports whether n is
// a mapping (and so meant as a plugin reference); ref is nil when it is one
// but is malformed, which has been reported.
func (p *parser) pluginRef(n *yaml.Node, seg, field string) (ref *PluginRef, ok bool) {
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	r := &PluginRef{}
	bad := false
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "plugin":
			r.Name = p.str(v, seg, field+".plugin")
		case "params":
			if v.Kind != yaml.MappingNode {
				p.fail(v, seg, field+".params", "want a mapping, got %s", describe(v))
				bad = true
				continue
			}
			if err := v.Decode(&r.Params); err != nil {
				p.fail(v, seg, field+".params", "%v", err)
				bad = true
			}
		default:
			p.fail(k, seg, field, "unknown field %q (a plugin predicate has plugin and params)", k.Value)
			bad = true
		}
	}
	if r.Name == "" {
		p.fail(n, seg, field+".plugin", "is missing: a mapping here names a plugin, e.g. {plugin: geofence, params: {...}}; write an expression as a string")
		bad = true
	}
	if bad {
		return nil, true
	}
	return r, true
}

// exprFail reports an expr compile error at its position in the YAML file.
func (p *parser) exprFail(n *yaml.Node, seg, field string, err error) {
	line, col := n.Line, n.Column
	msg := err.Error()
	var fe *exprError
	if errors.As(err, &fe) {
		msg = "expr: " + fe.msg + fe.snippet
		switch n.Style {
		case yaml.LiteralStyle, yaml.FoldedStyle:
			line, col = n.Line+fe.line, 0
		case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
			line, col = n.Line+fe.line-1, n.Column+1+fe.column
		default:
			line, col = n.Line+fe.line-1, n.Column+fe.column
		}
		if fe.line > 1 && n.Style != yaml.LiteralStyle && n.Style != yaml.FoldedStyle {
			col = 0
		}
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Column: col, Segment: seg, Kind: p.kind, Field: field, Msg: msg})
}

// str reads a non-empty string scalar.
func (p *parser) str(n *yaml.Node, seg, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, seg, field, "want a string, got %s", describe(n))
		return ""
	}
	if strings.TrimSpace(n.Value) == "" {
		p.fail(n, seg, field, "is empty")
		return ""
	}
	return n.Value
}

// lookup returns the value of key in mapping n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// describe names a node's type the way a rule author thinks of it.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "nothing (null)"
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return strconv.Quote(n.Value)
}
