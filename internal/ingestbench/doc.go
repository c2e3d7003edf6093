// Package ingestbench measures segd from the outside, as an operator would:
// it generates a deterministic event stream, pre-publishes it to
// SEGD_EVENTS, and times a real segd (a `segd serve` subprocess, or
// host.Start in this process) catching up from an empty data dir, beside
// plain JetStream consumers of the same messages in the same run. It also
// measures publish-to-membership freshness under a fixed background rate,
// and member.check / member.segments against the real engine beside a bare
// micro echo service on the same server.
//
// Every figure is reported with its baseline from the same run, because
// the machines it runs on are shared and noisy (docs/operations.md,
// "Measured").
package ingestbench
