package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/segd/segd/bus/client"
)

// Flag is one feature flag: its variants (name → value), the variant
// served by default, and targeting rules tried in order; the first whose
// segment holds the user decides.
type Flag struct {
	Key      string         `yaml:"-"`
	Variants map[string]any `yaml:"variants"`
	Default  string         `yaml:"default"`
	Rules    []Rule         `yaml:"rules"`
}

// Rule serves Variant to the users of Segment (a segd segment id).
type Rule struct {
	Segment string `yaml:"segment"`
	Variant string `yaml:"variant"`
}

// Flags are the flags of a flag file, by key.
type Flags map[string]*Flag

// LoadFlags reads and checks a flag file:
//
//	flags:
//	  new-checkout:
//	    variants: {on: true, off: false}
//	    default: off
//	    rules:
//	      - {segment: beta_testers, variant: on}
func LoadFlags(path string) (Flags, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseFlags(data)
}

// ParseFlags parses and checks the YAML of a flag file.
func ParseFlags(data []byte) (Flags, error) {
	var f struct {
		Flags Flags `yaml:"flags"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("flag file: %w", err)
	}
	for key, fl := range f.Flags {
		fl.Key = key
		if _, ok := fl.Variants[fl.Default]; !ok {
			return nil, fmt.Errorf("flag %q: default %q is not one of its variants", key, fl.Default)
		}
		for i, r := range fl.Rules {
			if r.Segment == "" {
				return nil, fmt.Errorf("flag %q: rule %d names no segment", key, i+1)
			}
			if _, ok := fl.Variants[r.Variant]; !ok {
				return nil, fmt.Errorf("flag %q: rule %d: variant %q is not one of its variants", key, i+1, r.Variant)
			}
		}
	}
	return f.Flags, nil
}

// Reasons and error codes of a Resolution, as OpenFeature names them.
const (
	ReasonTargetingMatch = "TARGETING_MATCH"
	ReasonDefault        = "DEFAULT"
	ReasonError          = "ERROR"

	ErrorFlagNotFound        = "FLAG_NOT_FOUND"
	ErrorTargetingKeyMissing = "TARGETING_KEY_MISSING"
	ErrorGeneral             = "GENERAL"
)

// Resolution is the outcome of evaluating a flag for a user, shaped like
// OpenFeature's resolution details.
type Resolution struct {
	Key          string `json:"key"`
	Value        any    `json:"value"`
	Variant      string `json:"variant,omitempty"`
	Reason       string `json:"reason"`
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
}

// Membership answers whether a user is in segments, failing closed: the
// map holds only exact answers (client.Client.InSegments).
type Membership interface {
	InSegments(ctx context.Context, user string, segments []string) (map[string]bool, error)
}

var _ Membership = (*client.Client)(nil)

// Evaluate resolves a flag for a user. It asks segd about every segment
// the flag's rules name in one request, under the client's membership
// deadline, then tries the rules in order. It fails closed: a rule whose
// segment segd did not answer exactly (segd down, too slow, the segment
// stale or unknown) cannot be skipped, since it might have matched, so the
// flag serves its default variant with reason ERROR. A rule before it that
// matched with an exact answer still decides.
func (fs Flags) Evaluate(ctx context.Context, m Membership, key, user string) Resolution {
	fl, ok := fs[key]
	if !ok {
		return Resolution{Key: key, Reason: ReasonError, ErrorCode: ErrorFlagNotFound, ErrorMessage: fmt.Sprintf("no flag %q", key)}
	}
	def := Resolution{Key: key, Value: fl.Variants[fl.Default], Variant: fl.Default, Reason: ReasonDefault}
	if user == "" {
		def.Reason, def.ErrorCode, def.ErrorMessage = ReasonError, ErrorTargetingKeyMissing, "no user"
		return def
	}
	if len(fl.Rules) == 0 {
		return def
	}
	var segments []string
	for _, r := range fl.Rules {
		if !slices.Contains(segments, r.Segment) {
			segments = append(segments, r.Segment)
		}
	}
	in, err := m.InSegments(ctx, user, segments)
	for _, r := range fl.Rules {
		member, answered := in[r.Segment]
		if !answered {
			if err == nil {
				err = errors.New("segd did not answer for segment " + r.Segment)
			}
			def.Reason, def.ErrorCode, def.ErrorMessage = ReasonError, ErrorGeneral, err.Error()
			return def
		}
		if member {
			return Resolution{Key: key, Value: fl.Variants[r.Variant], Variant: r.Variant, Reason: ReasonTargetingMatch}
		}
	}
	return def
}
