// Package engine is segd's state machine: it maps external user ids to dense
// ids, keeps profiles and per-rule windowed counts, and maintains each
// segment's membership as a roaring bitmap as batches arrive and as the clock
// moves windows.
//
// One goroutine (Run) applies batches and clock ticks, so the state needs no
// locks of its own; readers see membership through a read lock that the
// writer holds only while it publishes a batch's finished changes, never while
// it evaluates rules.
package engine
