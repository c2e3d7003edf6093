// Package analysis is segd's analysis index and the analyses it answers:
// event series, funnels, retention cohorts and segment size trends, each
// computed per segment and side by side with all users.
//
// The index sees every accepted event once, through Index.ObserveEvents
// (the engine's EventObserver), and keeps for a configurable number of
// calendar days (default 90, in the engine's time zone):
//
//   - per (event, day) a presence bitmap of the users who did it, and a
//     count index over the same users: a bit-sliced index whose bit planes
//     are roaring bitmaps, so that a day's total for a segment is a handful
//     of AND cardinalities and "did it at least N times" is a plane
//     comparison (O'Neil), never a walk over rows;
//   - per (event, day, numeric property) the values with their users, for
//     sum:PROP series;
//   - per user a compact timeline of (time, event) pairs, delta- and
//     varint-encoded, for the ordered question of funnels.
//
// Queries take segments as bitmaps of dense user ids (nil for all users)
// and never see half of a batch: ObserveEvents queues the batch and
// applies it only when no query is reading, so the engine's writer never
// waits for a query; a query first applies what is queued.
//
// The semantics (ClickHouse windowFunnel for funnels, PostHog first-time
// and recurring retention on calendar days) are documented in
// docs/analysis.md and on the query methods.
package analysis
