// Package scatter answers segd's requests over P partitions of the users:
// it scatters a request to the partitions (its Parts) and gathers one
// exact answer, as a single engine over every user would give it.
//
// Users are disjoint across partitions (partition = ingest.Partition(user,
// P)), so a point request about one user goes to that user's partition
// alone, and every aggregate adds up exactly: segment sizes, set algebra,
// daily histories, unique users, event totals, at_least:N users, funnels
// and retention cohorts are sums of the partitions' answers, and a funnel's
// conversions are recomputed from the summed users. No analysis needs an
// internal form beyond its public reply; sum:PROP series are the one
// floating-point measure, added partition by partition (see
// Scatter.AnalyzeEvents).
//
// Dense user ids stay local to a partition (its arrays stay compact);
// where ids leave a partition — paging cursors, set-algebra bitmaps,
// exports, UserNames — they are global ids (GlobalID, Split), which keep a
// partition's order and are the local ids themselves when P = 1.
//
// A partition that cannot answer makes the merged answer its error, with
// the same code, naming the partition (PartError): never a partial sum
// presented as whole. The package knows no NATS: a Part is anything that
// answers like one engine, in this process (Local) or, later, over the
// network.
package scatter
