// Package api holds segd's request-reply wire contract: subjects, the JSON
// request and reply types of every endpoint, and the error body. The service
// (package bus) and the Go client (package bus/client) both use it, so that
// the two cannot drift apart.
package api

// ServiceName is the nats micro service name; `nats micro info segd` shows it.
const ServiceName = "segd"

// Group is the subject prefix of every endpoint that only reads.
const Group = "segd.v1"

// AdminGroup is the subject prefix of the endpoints that change state
// (segment.upload; rule and plugin changes when they come) or run rule
// code a client sends (segment.preview: its expressions and plugins are
// trusted no more than the rule files admins load). It shares no
// prefix with Group, so that a permission granting readers "segd.v1.>"
// never reaches them: docs/security.md grants "segd.admin.v1.>" to admins
// only.
const AdminGroup = "segd.admin.v1"

// Endpoint subjects.
const (
	SubjectMemberCheck    = Group + ".member.check"
	SubjectMemberSegments = Group + ".member.segments"
	SubjectSegmentList    = Group + ".segment.list"
	SubjectSegmentCount   = Group + ".segment.count"
	SubjectStatus         = Group + ".status"
	SubjectSegmentGet     = Group + ".segment.get"
	SubjectSegmentMembers = Group + ".segment.members"
	SubjectSegmentExport  = Group + ".segment.export"
	SubjectSegmentQuery   = Group + ".segment.query"
	SubjectSegmentHistory = Group + ".segment.history"
	SubjectSegmentUpload  = AdminGroup + ".segment.upload"
	SubjectSegmentPreview = AdminGroup + ".segment.preview"
	SubjectUserGet        = Group + ".user.get"
)

// ChangesSubjectPrefix is where segd publishes membership changes:
// segd.changes.<segment>, kept in the JetStream stream ChangesStream.
const ChangesSubjectPrefix = "segd.changes."

// ChangesStream is the JetStream stream that keeps the change feed.
const ChangesStream = "SEGD_CHANGES"

// ExportBucket is the JetStream Object Store bucket holding exports too
// large for one reply.
const ExportBucket = "SEGD_EXPORTS"

// Change kinds in a Change message.
const (
	ChangeEnter = "enter"
	ChangeExit  = "exit"
)

// Change is one change of the change feed: a user entered or left a
// segment. Time is segd's clock when the change was applied (RFC 3339).
// The feed carries changes in ChangeBatch messages; client.ConsumeChanges
// hands them out one Change at a time.
type Change struct {
	User    string `json:"user"`
	Segment string `json:"segment"`
	// Change is ChangeEnter or ChangeExit.
	Change string `json:"change"`
	Time   string `json:"time"`
}

// ChangeBatch is one message of the change feed on segd.changes.<segment>:
// the users who entered and who left one segment in one step of segd (one
// applied events-stream message, or one move of the clock), at one time.
// A step with many changes is cut into several messages of at most about
// 64 KiB each; a user is in at most one of Enter and Exit.
type ChangeBatch struct {
	Segment string `json:"segment"`
	// Time is segd's clock when the changes were applied (RFC 3339).
	Time  string   `json:"time"`
	Enter []string `json:"enter,omitempty"`
	Exit  []string `json:"exit,omitempty"`
}

// Headers of a change feed message besides Nats-Msg-Id.
const (
	// HeaderEventsSeq is the SEGD_EVENTS stream sequence whose application
	// caused the change; 0 for a change the clock alone caused.
	HeaderEventsSeq = "Segd-Events-Seq"
	// HeaderChanges is the number of changes in the message (Enter and
	// Exit together).
	HeaderChanges = "Segd-Changes"
)

// EventsSubjectPrefix is where producers publish batches: segd.events.<anything>.
const EventsSubjectPrefix = "segd.events."

// MemberCheckRequest asks whether a user is in a segment.
type MemberCheckRequest struct {
	User    string `json:"user"`
	Segment string `json:"segment"`
}

// MemberCheckReply answers MemberCheckRequest.
type MemberCheckReply struct {
	Member bool `json:"member"`
	// Since is when the user entered the segment (RFC 3339), for a member.
	Since string `json:"since,omitempty"`
	// State is the segment's state (StateExact, StateRebuilding or
	// StateReplaying: the others are answered 503), Revision the revision
	// whose membership is answered, when known. Only an answer whose State
	// is StateExact is exact (docs/operations.md, "The membership
	// contract").
	State    string `json:"state,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
	// AsOf is the point of the event log the answer reflects.
	AsOf *AsOf `json:"as_of,omitempty"`
}

// AsOf is the point of the event log a membership answer reflects, read
// together with the membership it answers.
type AsOf struct {
	// Seq is the last events stream sequence applied.
	Seq uint64 `json:"seq"`
	// Time is segd's clock at the last step (an applied message or a
	// move of the clock that moved windows), RFC 3339: windows are
	// evaluated as of it.
	Time string `json:"time"`
}

// Segment states in membership answers (MemberCheckReply.State,
// SegmentState.State).
const (
	// StateExact: the membership is exact for the segment's current
	// definition over the events stream up to AsOf.Seq, and segd has
	// caught up with the log as it was at start.
	StateExact = "exact"
	// StateRebuilding: the segment is being rebuilt from the log. Its
	// membership is answered only while a previous revision serves
	// (Revision names it; exact for that revision); a segment with none is
	// not served (503, or listed in Unavailable).
	StateRebuilding = "rebuilding"
	// StateReplaying: segd replays its event log after a start; the
	// membership is that of the log replayed so far (up to AsOf.Seq),
	// behind the log's end.
	StateReplaying = "replaying"
	// StateStale and StateFailed: not served (see SegmentStale and
	// SegmentFailed).
	StateStale  = SegmentStale
	StateFailed = SegmentFailed
)

// MaxMemberSegments bounds MemberSegmentsRequest.Segments (distinct ids).
const MaxMemberSegments = 100

// MemberSegmentsRequest asks which segments a user is in.
type MemberSegmentsRequest struct {
	User string `json:"user"`
	// Segments, when set, asks about these segments only (at most
	// MaxMemberSegments distinct ids); ids that are not defined are listed
	// in the reply's Unknown. Absent, the reply covers every segment.
	Segments []string `json:"segments,omitempty"`
	// ExactOnly leaves out the segments whose state is not StateExact,
	// listing them in Unavailable.
	ExactOnly bool `json:"exact_only,omitempty"`
}

// MemberSegmentsReply lists segment ids in ascending order; empty, not null,
// for a user in none (or never seen).
type MemberSegmentsReply struct {
	Segments []string `json:"segments"`
	// Memberships repeats Segments with when the user entered each.
	Memberships []Membership `json:"memberships"`
	// Unavailable lists the segments whose membership is not served now
	// (rebuilding with no previous revision, stale or failed: see
	// segment.list), and with ExactOnly those not exact, left out of
	// Segments whether or not the user is in them.
	Unavailable []string `json:"unavailable,omitempty"`
	// States gives the state of every segment the answer covers (those
	// asked for, or all), in id order, those in Unavailable included.
	States []SegmentState `json:"states,omitempty"`
	// Unknown lists the segments asked for that are not defined.
	Unknown []string `json:"unknown,omitempty"`
	// AsOf is the point of the event log the answer reflects.
	AsOf *AsOf `json:"as_of,omitempty"`
}

// SegmentState is a segment's state in a membership answer.
type SegmentState struct {
	Segment string `json:"segment"`
	// State is one of the State* values.
	State string `json:"state"`
	// Revision is the revision whose membership is answered, when known.
	Revision uint64 `json:"revision,omitempty"`
}

// Membership is one segment a user is in, and since when (RFC 3339).
type Membership struct {
	Segment string `json:"segment"`
	Since   string `json:"since"`
}

// SegmentRequest names a segment (segment.get).
type SegmentRequest struct {
	Segment string `json:"segment"`
}

// SegmentGetReply describes one segment: its definition, status, size and
// when its membership last changed.
type SegmentGetReply struct {
	SegmentInfo
	// Definition is the segment's rule as YAML.
	Definition string `json:"definition"`
	// Updated is when the membership last changed (RFC 3339), empty if never.
	Updated string `json:"updated,omitempty"`
}

// SegmentMembersRequest asks for one page of a segment's members. Cursor
// is empty for the first page and the previous reply's Next afterwards;
// Limit defaults to 1000 and is capped at 10000.
type SegmentMembersRequest struct {
	Segment string `json:"segment"`
	Cursor  string `json:"cursor,omitempty"`
	Limit   int    `json:"limit,omitempty"`
}

// SegmentMembersReply is one page of members (external user ids). Next is
// the cursor of the following page, empty after the last one.
type SegmentMembersReply struct {
	Users []string `json:"users"`
	Next  string   `json:"next,omitempty"`
}

// Export formats.
const (
	// FormatIDs is a JSON array of external user ids.
	FormatIDs = "ids"
	// FormatRoaring is a roaring bitmap in its portable serialization, of
	// segd's dense user ids; useful for set algebra between exports of the
	// same segd, not across restarts (dense ids are assigned on replay).
	FormatRoaring = "roaring"
)

// SegmentExportRequest exports a whole segment.
type SegmentExportRequest struct {
	Segment string `json:"segment"`
	// Format is FormatIDs (default) or FormatRoaring.
	Format string `json:"format,omitempty"`
}

// SegmentExportReply carries the export inline (Users for ids, Roaring,
// base64 in JSON, for roaring) or, when it would not fit in one message,
// names an Object Store object in Bucket that holds it: for ids the object
// is newline-separated user ids, for roaring the portable serialization.
type SegmentExportReply struct {
	Segment string   `json:"segment"`
	Format  string   `json:"format"`
	Count   uint64   `json:"count"`
	Users   []string `json:"users,omitempty"`
	Roaring []byte   `json:"roaring,omitempty"`
	Bucket  string   `json:"bucket,omitempty"`
	Object  string   `json:"object,omitempty"`
	// Size is the object's size in bytes, when Object is set.
	Size uint64 `json:"size,omitempty"`
	// Expires is when the object will be deleted (RFC 3339).
	Expires string `json:"expires,omitempty"`
}

// SegmentQueryRequest evaluates set algebra over segments: `&` (and), `|`
// (or), `-` (and not), `!` (not: relative to every user seen), and
// parentheses; `!` binds tightest, then `&`, then `-`, then `|`.
type SegmentQueryRequest struct {
	Expr string `json:"expr"`
	// CountOnly skips the users and returns only Count.
	CountOnly bool `json:"count_only,omitempty"`
	// Limit caps the users returned (default 1000, at most 10000); Count
	// is always the full size. Use segment.export for more.
	Limit int `json:"limit,omitempty"`
}

// SegmentQueryReply is the result of a query: its size and, unless
// count_only, up to Limit user ids (Truncated says there are more).
type SegmentQueryReply struct {
	Count     uint64   `json:"count"`
	Users     []string `json:"users,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`
}

// SegmentHistoryRequest asks for a segment's daily history between two
// calendar dates (YYYY-MM-DD, or RFC 3339), inclusive. From defaults to 30
// days before To, To to today.
type SegmentHistoryRequest struct {
	Segment string `json:"segment"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
}

// SegmentHistoryReply lists one entry per day, oldest first.
type SegmentHistoryReply struct {
	Segment string       `json:"segment"`
	Days    []HistoryDay `json:"days"`
	// HistoryStart is the first day segd recorded for the segment (the
	// day it first applied a change to it; a first start over an existing
	// log replays it all on that day): earlier days show 0 because nothing
	// was recorded, not because the segment was empty. Absent when
	// nothing is recorded yet.
	HistoryStart string `json:"history_start,omitempty"`
}

// HistoryDay is one calendar day of a segment's history: its size at the
// end of the day (or now, for today) and how many users entered and left.
type HistoryDay struct {
	Day     string `json:"day"`
	Size    uint64 `json:"size"`
	Entered uint64 `json:"entered"`
	Left    uint64 `json:"left"`
}

// Upload modes.
const (
	UploadReplace = "replace"
	UploadAppend  = "append"
)

// SegmentUploadRequest sets (replace) or extends (append) the members of a
// static segment.
type SegmentUploadRequest struct {
	Segment string   `json:"segment"`
	Users   []string `json:"users"`
	// Mode is UploadReplace or UploadAppend.
	Mode string `json:"mode"`
	// AllowEmpty must be set for a replace with no users, which empties
	// the segment: without it such a request is refused, so that a
	// forgotten list does not wipe a segment.
	AllowEmpty bool `json:"allow_empty,omitempty"`
	// WaitMs bounds how long segd waits for the upload to be applied
	// before it replies that it is stored and being applied (0: the
	// default and most, 30000).
	WaitMs int `json:"wait_ms,omitempty"`
}

// SegmentUploadReply reports the segment's size once the upload is applied.
type SegmentUploadReply struct {
	Segment string `json:"segment"`
	Size    uint64 `json:"size"`
	// Seq is the events stream sequence of the upload.
	Seq uint64 `json:"seq"`
	// Applied is false when the upload is stored in the events stream (it
	// will be applied, in order, also across a restart) but was not
	// applied within the wait: Size is then the size before it.
	Applied bool `json:"applied"`
}

// SegmentPreviewRequest asks what a segment that is not saved would hold
// now: Definition is one segment in the rules-file form (YAML or JSON, with
// its id; it may read saved segments with in_segment), Limit caps the
// members returned (default 100, at most 10000).
type SegmentPreviewRequest struct {
	Definition string `json:"definition"`
	Limit      int    `json:"limit,omitempty"`
}

// SegmentPreviewReply is a previewed segment's size and first members
// (external ids, in the order users were first seen), computed over the
// retained event log up to Seq.
type SegmentPreviewReply struct {
	ID    string   `json:"id"`
	Kind  string   `json:"kind"`
	Size  uint64   `json:"size"`
	Users []string `json:"users"`
	// Seq is the last events stream sequence replayed; Messages how many
	// messages that was, and TookMs how long it took.
	Seq      uint64 `json:"seq"`
	Messages uint64 `json:"messages"`
	TookMs   int64  `json:"took_ms"`
	// EvalErrors counts the events or profiles the definition's predicates
	// (and those of the saved segments it reads) could not judge, such as a
	// comparison with a missing property; they count as non-matches, so a
	// predicate that fails on every item answers 0 users with this count.
	// LastEvalError describes the latest, as in segment.list.
	EvalErrors    uint64 `json:"eval_errors,omitempty"`
	LastEvalError string `json:"last_eval_error,omitempty"`
	// Error says that a predicate failed whole batches (a plugin that
	// trapped or timed out): the size and members are then incomplete.
	Error string `json:"error,omitempty"`
}

// SegmentListReply lists every segment.
type SegmentListReply struct {
	Segments []SegmentInfo `json:"segments"`
}

// SegmentInfo describes one segment as segment.list shows it.
type SegmentInfo struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Description string `json:"description,omitempty"`
	Size        uint64 `json:"size"`
	// Status is "active"; "rebuilding" while the segment's state is
	// rebuilt from the event log (a new or changed rule at start, or to
	// recover a stale segment), with Rebuild saying how far, its membership
	// then not served (503); or SegmentStale / SegmentFailed with Error
	// saying why and Stale how it recovers (membership not served: 503).
	Status string `json:"status"`
	// Rebuild is the progress of a rebuilding segment.
	Rebuild *RebuildStatus `json:"rebuild,omitempty"`
	Error   string         `json:"error,omitempty"`
	// Stale says, for a segment whose status is "stale" or "failed" (or
	// "rebuilding" to recover from either), why its membership is not exact
	// and how segd recovers it (docs/plugins.md).
	Stale *StaleStatus `json:"stale,omitempty"`
	// EvalErrors counts events or profiles the rule's predicate could not
	// judge (an expr runtime error such as comparing a missing attribute);
	// they count as non-matches. LastEvalError describes the latest.
	EvalErrors    uint64 `json:"eval_errors,omitempty"`
	LastEvalError string `json:"last_eval_error,omitempty"`
	// Revision is the rules admin API revision of the definition served
	// (absent for a segment defined in a rule file).
	Revision uint64 `json:"revision,omitempty"`
	// NextRevision, while a new definition is rebuilt from the log, is its
	// revision and progress: meanwhile the segment serves Revision's exact
	// membership (a new segment: 503 "rebuilding").
	NextRevision *NextRevision `json:"next_revision,omitempty"`
	// Plugins are the versions (hex sha256) of the plugins the rule names
	// that judge the membership served: while a new version's rebuild
	// runs, the previous one's (NextRevision.Plugins has the new).
	Plugins map[string]string `json:"plugins,omitempty"`
}

// NextRevision is a definition being rebuilt beside the one served: a new
// revision, or the same one (a rule file's is 0) with a new version of a
// plugin it names.
type NextRevision struct {
	Revision uint64         `json:"revision"`
	Rebuild  *RebuildStatus `json:"rebuild,omitempty"`
	// Plugins are the plugin versions the rebuild judges with.
	Plugins map[string]string `json:"plugins,omitempty"`
}

// SegmentCountRequest asks for a segment's size.
type SegmentCountRequest struct {
	Segment string `json:"segment"`
}

// SegmentCountReply answers SegmentCountRequest.
type SegmentCountReply struct {
	Count uint64 `json:"count"`
}

// StatusReply reports ingest progress and health.
type StatusReply struct {
	Ready bool `json:"ready"`
	// LastSeq is the last JetStream stream sequence applied.
	LastSeq uint64 `json:"last_seq"`
	// Batches, Events and Profiles count what was applied.
	Batches  uint64 `json:"batches"`
	Events   uint64 `json:"events"`
	Profiles uint64 `json:"profiles"`
	// InvalidItems counts skipped items; FirstInvalid describes the first.
	InvalidItems uint64 `json:"invalid_items"`
	FirstInvalid string `json:"first_invalid,omitempty"`
	// Uploads counts static segment uploads applied; RejectedUploads those
	// for a segment that was not static when they were applied.
	Uploads         uint64 `json:"uploads"`
	RejectedUploads uint64 `json:"rejected_uploads,omitempty"`
	// Expired counts events dropped for being older than the retention:
	// no window can reach them.
	Expired uint64 `json:"expired"`
	// TooNew counts events rejected for being further ahead of the clock
	// than the allowed skew.
	TooNew uint64 `json:"too_new"`
	// NotBatches counts messages that were not batches at all.
	NotBatches   uint64 `json:"not_batches"`
	LastNotBatch string `json:"last_not_batch,omitempty"`
	// Users is the number of distinct users seen.
	Users uint64 `json:"users"`
	// Clock is the engine's current time (RFC 3339), which moves windows.
	Clock string `json:"clock"`
	// ReplayFrom is the stream sequence this start began consuming at (1
	// for a full replay, a snapshot's sequence + 1 otherwise) and ReplayTo
	// the events stream's last sequence at start. Ready turns true once
	// LastSeq reaches ReplayTo.
	ReplayFrom uint64 `json:"replay_from,omitempty"`
	ReplayTo   uint64 `json:"replay_to,omitempty"`
	// Snapshot reports the snapshot loaded at start and the last written.
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`
	// DeadLetters counts the messages of this run copied to the dead-letter
	// stream DeadLetterStream (NotBatches counts them across restarts).
	DeadLetters      uint64 `json:"dead_letters"`
	DeadLetterStream string `json:"dead_letter_stream,omitempty"`
	// DeadLetterRecords counts the dead letters of this run that are only a
	// record (headers, size, the first 4 KiB) of a message too large to
	// copy whole.
	DeadLetterRecords uint64 `json:"dead_letter_records,omitempty"`
	// IngestRetries counts failed attempts, in this run, to apply a message
	// or to store its dead letter that were tried again.
	IngestRetries uint64 `json:"ingest_retries,omitempty"`
	// GaveUp counts messages acked unapplied in this run after their apply
	// failed every attempt; each is in the dead-letter stream (or counted in
	// LostToDLQ).
	GaveUp uint64 `json:"gave_up,omitempty"`
	// LostToDLQ counts messages of this run whose dead letter could not be
	// stored; the log has their sequence, subject, size and reason.
	LostToDLQ uint64 `json:"lost_to_dlq,omitempty"`
	// FirstIngestError and LastIngestError describe the first and the
	// latest failed attempt of this run, with sequence and subject.
	FirstIngestError string `json:"first_ingest_error,omitempty"`
	LastIngestError  string `json:"last_ingest_error,omitempty"`
	// RefusedItems counts events, profile updates and uploaded ids refused
	// because the user id space was full (docs/events.md, "Limits");
	// RefusedValues events left out of a distinct condition whose value
	// table was full. FirstRefused describes the first refusal.
	RefusedItems  uint64 `json:"refused_items,omitempty"`
	RefusedValues uint64 `json:"refused_values,omitempty"`
	FirstRefused  string `json:"first_refused,omitempty"`
	// AnalysisDropped counts events the analysis index did not keep
	// because its event-name dictionary was full; FirstAnalysisDropped
	// names the first such event.
	AnalysisDropped      uint64 `json:"analysis_dropped,omitempty"`
	FirstAnalysisDropped string `json:"first_analysis_dropped,omitempty"`
	// Rebuilding lists the segments being rebuilt from the log (new or
	// changed rules at start; see docs/operations.md): Ready stays false
	// until it is empty.
	Rebuilding []RebuildStatus `json:"rebuilding,omitempty"`
	// Plugins reports the loaded WASM plugins (docs/plugins.md).
	Plugins []PluginStatus `json:"plugins,omitempty"`
	// Stale lists the segments not served because a predicate could not
	// judge a batch (or they read such a segment), until rebuilt from the
	// log; see SegmentInfo.Stale.
	Stale []StaleStatus `json:"stale,omitempty"`
	// Feed reports the change feed's publisher (docs/operations.md).
	Feed *FeedStatus `json:"feed,omitempty"`
	// Partitions reports each partition's progress when the users are
	// split into more than one (docs/operations.md, "Partitions: how
	// answers are merged"); the fields above are then their merge.
	Partitions []PartitionStatus `json:"partitions,omitempty"`
	// Host is the answering segd's --host-id, when several hosts share the
	// NATS (docs/operations.md, "Running a standby"): the stream's owner.
	Host string `json:"host,omitempty"`
	// OwnedPartitions lists the partitions the answering host runs, when
	// several active hosts share them (docs/operations.md, "Several
	// active hosts"); the fields above are the merge over every
	// partition, wherever it runs.
	OwnedPartitions []int `json:"owned_partitions,omitzero"`
}

// PartitionStatus is one partition's progress, within a StatusReply.
type PartitionStatus struct {
	Partition int  `json:"partition"`
	Ready     bool `json:"ready"`
	// LastSeq is the last stream sequence the partition applied; Replay*
	// as in StatusReply.
	LastSeq    uint64 `json:"last_seq"`
	ReplayFrom uint64 `json:"replay_from,omitempty"`
	ReplayTo   uint64 `json:"replay_to,omitempty"`
	Users      uint64 `json:"users"`
	Events     uint64 `json:"events"`
	// Rebuilding and Stale count the partition's segments being rebuilt
	// and not served.
	Rebuilding int             `json:"rebuilding,omitempty"`
	Stale      int             `json:"stale,omitempty"`
	Snapshot   *SnapshotStatus `json:"snapshot,omitempty"`
	Feed       *FeedStatus     `json:"feed,omitempty"`
}

// Segment states beyond "active" and "rebuilding" (SegmentInfo.Status).
const (
	// SegmentStale: a predicate of the rule (a plugin) could not judge a
	// batch, so the membership misses that batch's events, or the rule
	// reads a stale segment. Membership is not served (503) until the
	// segment is rebuilt from the event log, which segd does once the
	// plugin works again or gets a new version.
	SegmentStale = "stale"
	// SegmentFailed: stale, and the rebuilds from the log failed again
	// StaleStatus.MaxRebuilds times (a batch the plugin cannot judge at
	// all); segd waits for a new version of the plugin, or a restart.
	SegmentFailed = "failed"
	// SegmentUnavailable: a partition of the segment is owned by a host
	// that did not answer in time (a takeover is under way); the size is
	// 0 rather than the other partitions' partial sum.
	SegmentUnavailable = "unavailable"
)

// StaleStatus describes a stale (or failed) segment.
type StaleStatus struct {
	Segment string `json:"segment"`
	// State is SegmentStale, SegmentFailed or "rebuilding" (a recovery
	// rebuild is running).
	State string `json:"state"`
	// Error is the predicate's error, or names the stale segment read.
	Error string `json:"error"`
	// Seq is the stream sequence of the first batch the segment missed
	// (0 when it was stale in the snapshot loaded at start).
	Seq uint64 `json:"seq"`
	// Plugins are the plugins the rule names, whose recovery or new
	// version triggers a rebuild.
	Plugins []string `json:"plugins,omitempty"`
	// Rebuilds counts rebuilds from the log that failed again, of at most
	// MaxRebuilds before the state is SegmentFailed.
	Rebuilds    int `json:"rebuilds"`
	MaxRebuilds int `json:"max_rebuilds"`
	// NextRebuild is the earliest time (RFC 3339) of the next rebuild,
	// after a failed one (back-off); empty when there is none to wait.
	NextRebuild string `json:"next_rebuild,omitempty"`
	// Waiting says in words what the rebuild waits for.
	Waiting string `json:"waiting"`
}

// FeedStatus is the change feed publisher's state since start.
type FeedStatus struct {
	// Published counts changes stored in SEGD_CHANGES, in Messages messages.
	Published uint64 `json:"published"`
	Messages  uint64 `json:"messages"`
	// Backlog counts changes waiting to be stored, BacklogBytes their size;
	// MaxBacklogBytes is the bound past which ingest waits for the feed.
	Backlog         uint64 `json:"backlog"`
	BacklogBytes    uint64 `json:"backlog_bytes"`
	MaxBacklogBytes uint64 `json:"max_backlog_bytes"`
	// Waits counts the times ingest waited for the backlog to shrink;
	// WaitingSince is set while it waits (RFC 3339).
	Waits        uint64 `json:"waits"`
	WaitingSince string `json:"waiting_since,omitempty"`
	// Failed counts publishes JetStream did not acknowledge (each is
	// retried, in order, until stored); LastError is the latest failure.
	Failed    uint64 `json:"failed"`
	LastError string `json:"last_error,omitempty"`
	// Suppressed counts changes an earlier run had published (the replay
	// at start regenerates them).
	Suppressed uint64 `json:"suppressed,omitempty"`
	// Unpublishable counts changes too large for one NATS message (a user
	// id near the max payload), which cannot be published at all.
	Unpublishable uint64 `json:"unpublishable,omitempty"`
}

// PluginStatus is one WASM plugin's health and counters since load.
type PluginStatus struct {
	Name string `json:"name"`
	// Version is the hex sha256 of the module; ABI its "major.minor".
	Version string `json:"version,omitempty"`
	ABI     string `json:"abi,omitempty"`
	// State is "ok", "failed" (its segments are stale) or
	// "invalid" (not loaded); LastError says why.
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
	// Interrupt is how the deadline is enforced: "checks", "wazero" or "off".
	Interrupt string `json:"interrupt,omitempty"`
	Batches   uint64 `json:"batches"`
	Items     uint64 `json:"items"`
	Timeouts  uint64 `json:"timeouts"`
	Traps     uint64 `json:"traps"`
	Retries   uint64 `json:"retries"`
	// Instances is the number of warm instances now.
	Instances int `json:"instances"`
}

// SnapshotStatus reports segd's snapshots (see docs/operations.md).
type SnapshotStatus struct {
	// Loaded is the file loaded at start (empty: none, a full replay) and
	// LoadedSeq its stream sequence.
	Loaded    string `json:"loaded,omitempty"`
	LoadedSeq uint64 `json:"loaded_seq,omitempty"`
	// Rebuilt lists the segments the loaded snapshot held no state for
	// (new or changed rules, and the rules that read them): they were
	// rebuilt from the retained log, the others loaded.
	Rebuilt []string `json:"rebuilt,omitempty"`
	// Rejected lists snapshot files that could not be used at start, each
	// with the reason (corrupt, another stream, changed configuration).
	Rejected []string `json:"rejected,omitempty"`
	// Written counts snapshots written by this run; the Last* fields
	// describe the latest.
	Written    uint64 `json:"written"`
	LastFile   string `json:"last_file,omitempty"`
	LastSeq    uint64 `json:"last_seq,omitempty"`
	LastTime   string `json:"last_time,omitempty"`
	LastBytes  int64  `json:"last_bytes,omitempty"`
	LastPause  string `json:"last_pause,omitempty"` // ingest paused while capturing
	LastWrite  string `json:"last_write,omitempty"` // encoding the capture, writing and syncing the file
	Failures   uint64 `json:"failures,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	IntervalMs int64  `json:"interval_ms,omitempty"`
	// Skipped counts snapshots not taken because they would not fit in
	// memory (estimated from the last one's size against the configured
	// limit or the memory available); LastSkip says why the latest was.
	Skipped  uint64 `json:"skipped,omitempty"`
	LastSkip string `json:"last_skip,omitempty"`
}

// RebuildStatus is the progress of a segment rebuilt from the log.
type RebuildStatus struct {
	Segment string `json:"segment"`
	// Seq is the stream sequence replayed so far, of ToSeq.
	Seq   uint64 `json:"seq"`
	ToSeq uint64 `json:"to_seq"`
}

// Error codes, in the Nats-Service-Error-Code header and the error body.
const (
	CodeBadRequest = "400"
	CodeNotFound   = "404"
	CodeTooLarge   = "413"
	// CodeConflict: the request conflicts with the current state (an
	// expected revision another editor has moved on from; a segment that
	// others read).
	CodeConflict    = "409"
	CodeUnavailable = "503"
	CodeInternal    = "500"
)

// ErrorBody is the JSON body of an error reply. Its code and description
// repeat the micro error headers; Field names the request field at fault.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of ErrorBody.
type ErrorDetail struct {
	Code        string `json:"code"`
	Description string `json:"description"`
	Field       string `json:"field,omitempty"`
}

// Item is one element of an ingest batch as producers write it: an event
// (Event set), a profile update (Profile set), or both for the same user.
// Time is RFC 3339 or Unix milliseconds; omitted, it is the stream timestamp.
// A batch is a JSON array of items, or NDJSON; see docs/events.md.
type Item struct {
	User    string         `json:"user"`
	Event   string         `json:"event,omitempty"`
	Time    any            `json:"time,omitempty"`
	Props   map[string]any `json:"props,omitempty"`
	Profile map[string]any `json:"profile,omitempty"`
}

// UserGetRequest asks what segd knows about one user (user.get): the
// profile, the segments they are in, their recent events and, when Segment
// is set, why they are in it or not. From and To are calendar dates
// (YYYY-MM-DD, segd's time zone, inclusive) bounding the events: To
// defaults to today, From to 6 days before To; the span is at most the
// days the analysis index keeps. Events come newest first, Limit at a time
// (default 100, at most 1000), after skipping Offset of them (a reply's
// NextOffset asks for the next page).
type UserGetRequest struct {
	User    string `json:"user"`
	Segment string `json:"segment,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Offset  int    `json:"offset,omitempty"`
}

// UserGetReply answers UserGetRequest. A user segd never saw is Known
// false, with an empty profile and no segments or events.
type UserGetReply struct {
	User  string `json:"user"`
	Known bool   `json:"known"`
	// Profile is the user's profile attributes now ({} for none).
	Profile map[string]any `json:"profile"`
	// Segments are the segments the user is in, in id order, with since
	// when; Unavailable those whose membership is not served now.
	Segments    []Membership `json:"segments"`
	Unavailable []string     `json:"unavailable,omitempty"`
	// From and To are the days the events were read from.
	From string `json:"from"`
	To   string `json:"to"`
	// Events are the user's events in From..To, newest first, one page.
	// NextOffset, when set, is the Offset of the next page.
	Events     []UserEvent `json:"events"`
	NextOffset int         `json:"next_offset,omitempty"`
	// Explain is why the user is in Segment or not, when asked.
	Explain *Explanation `json:"explain,omitempty"`
}

// UserEvent is one event of a user (the analysis index keeps its name and
// time, not its properties).
type UserEvent struct {
	Time  string `json:"time"`
	Event string `json:"event"`
}

// Explanation is the value, for one user now, of each condition of a
// segment's rule.
type Explanation struct {
	Segment string `json:"segment"`
	// Member is the user's membership as served; Holds the rule's value
	// for the user now (they differ only for a stale or rebuilding segment,
	// or between a clock step and its application).
	Member bool `json:"member"`
	Holds  bool `json:"holds"`
	// Conditions are the rule's conditions, parents before their parts
	// (Depth 0 is the rule itself).
	Conditions []ConditionValue `json:"conditions"`
}

// ConditionValue is one condition of a rule for one user.
type ConditionValue struct {
	Depth int `json:"depth"`
	// Condition is the condition as written, e.g. "all of",
	// "did checkout: count >= 3, last 7d", "profile: age < 25".
	Condition string `json:"condition"`
	// Value is a did condition's aggregate over the user's events in its
	// window (absent when undefined: avg, min or max of no events).
	Value *float64 `json:"value,omitempty"`
	Holds bool     `json:"holds"`
	// Text says it in words, e.g. "checkout count in last 7d = 4 (>= 3 holds)".
	Text string `json:"text"`
}
