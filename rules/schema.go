package rules

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// PropType is a property's type in an event schema.
type PropType string

// Property types.
const (
	TypeNumber PropType = "number"
	TypeString PropType = "string"
	TypeBool   PropType = "bool"
	TypeAny    PropType = "any"
)

// Schema declares the events producers send and the types of their
// properties, so that rules are checked against it: an aggregate over a
// property the schema says is not a number is an error, and with Strict, so
// is an event the schema does not declare.
type Schema struct {
	Strict bool
	Events map[string]map[string]PropType
}

// ParseSchema reads a schema file:
//
//	strict: true
//	events:
//	  checkout: {amount: number, items: number}
//	  search:   {term: string}
func ParseSchema(name string, data []byte) (*Schema, error) {
	var raw struct {
		Strict bool                         `yaml:"strict"`
		Events map[string]map[string]string `yaml:"events"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	s := &Schema{Strict: raw.Strict, Events: map[string]map[string]PropType{}}
	for ev, props := range raw.Events {
		s.Events[ev] = map[string]PropType{}
		for prop, t := range props {
			switch pt := PropType(t); pt {
			case TypeNumber, TypeString, TypeBool, TypeAny:
				s.Events[ev][prop] = pt
			default:
				return nil, fmt.Errorf("%s: event %q, property %q: type %q is not number, string, bool or any", name, ev, prop, t)
			}
		}
	}
	return s, nil
}

func (s *Schema) eventNames() string {
	names := make([]string, 0, len(s.Events))
	for n := range s.Events {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkEvent reports an event a strict schema does not declare, or one
// that Options.CheckEvent refuses.
func (p *parser) checkEvent(n *yaml.Node, name, field string) {
	if check := p.opts.CheckEvent; check != nil {
		if err := check(p.file, name); err != nil {
			p.fail(n, p.seg, field, "%v", err)
			return
		}
	}
	s := p.opts.Schema
	if s == nil || !s.Strict {
		return
	}
	if _, ok := s.Events[name]; !ok {
		p.fail(n, p.seg, field, "unknown event %q: the schema declares %s", name, s.eventNames())
	}
}

// checkNumeric reports a numeric aggregate over a property the schema
// types otherwise (or, when strict, does not declare).
func (p *parser) checkNumeric(n *yaml.Node, events []string, agg AggFunc, prop, field string) {
	s := p.opts.Schema
	if s == nil {
		return
	}
	for _, ev := range events {
		props, ok := s.Events[ev]
		if !ok {
			continue
		}
		t, ok := props[prop]
		switch {
		case !ok && s.Strict:
			p.fail(n, p.seg, field, "event %q has no property %q in the schema", ev, prop)
		case ok && t != TypeNumber && t != TypeAny:
			p.fail(n, p.seg, field, "property %q of event %q is a %s in the schema; %s needs a number", prop, ev, t, agg)
		}
	}
}
