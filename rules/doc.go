// Package rules is segd's rule model: the events and profiles that rules read,
// the Predicate interfaces that judge them a batch at a time, the YAML segment
// definitions, their validation with precise errors, and their compilation into
// expr programs with a typed environment.
//
// It does no I/O beyond reading rule text handed to it and knows nothing of NATS.
package rules
