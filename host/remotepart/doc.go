// Package remotepart has one job: to answer a scatter.Part of a partition
// owned by another host over NATS. Serve answers, on the owner, the
// internal requests of every Part method from the partition's local Part;
// New returns, on any host, a scatter.Part whose methods are such
// requests, forwarded to the partition's owner (cluster.Forward), so that
// a host merges partitions it owns and partitions owned elsewhere alike.
//
// Each Part method is one internal op (segd.internal.v1.p<N>.<op>). Bodies
// are JSON of the bus/api types, except dense ids (little-endian uint32)
// and roaring bitmaps (roaring's portable serialization). A reply larger
// than the connection's max payload comes back in chunks (cluster.Router).
//
// Errors keep their kind across the wire: an *ingest.Error keeps its code
// and field, an error wrapping ingest.ErrNotFound stays one (404), context
// errors stay context errors, and a partition without an owner within the
// wait is a 503 naming it; so the merged public answer has the code it has
// in one process. The Part methods without an error bound their wait
// and, past it, answer what makes the merged answer unavailable rather
// than a partial one: Status a partition not ready, with the reason;
// Segments every known segment "unavailable"; UnavailableSegments every
// known segment; MemberView a view whose Err is the 503. UserSegments,
// UserMemberships (no endpoint serves them) and HistoryStart (an
// informational field) answer empty.
package remotepart
