package api

// The rules admin API (group AdminGroup): segment definitions kept in
// JetStream KV (bucket RulesBucket), changed while segd runs. See
// docs/api.md.
const (
	SubjectRuleValidate = AdminGroup + ".rule.validate"
	SubjectRulePut      = AdminGroup + ".rule.put"
	SubjectRuleGet      = AdminGroup + ".rule.get"
	SubjectRuleList     = AdminGroup + ".rule.list"
	SubjectRuleDelete   = AdminGroup + ".rule.delete"
	SubjectRuleHistory  = AdminGroup + ".rule.history"
)

// RuleFile is a rules file sent for validation: a name (used in error
// locations) and its YAML.
type RuleFile struct {
	Name string `json:"name"`
	Data string `json:"data"`
}

// RuleValidateRequest asks whether definitions would compile beside the
// running ones: one segment (Definition) or a set of files. What they
// define replaces the running definition of the same id.
type RuleValidateRequest struct {
	Definition string     `json:"definition,omitempty"`
	Files      []RuleFile `json:"files,omitempty"`
}

// RuleValidateReply lists every problem, each with its place; Valid when
// none. Segments are the ids the request defines.
type RuleValidateReply struct {
	Valid    bool        `json:"valid"`
	Segments []string    `json:"segments,omitempty"`
	Errors   []RuleError `json:"errors,omitempty"`
}

// RuleError is one located problem of a definition (rules.Error).
type RuleError struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Segment string `json:"segment,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// RulePutRequest creates or replaces one segment's definition (one
// segment as in a rules file). Segment, if set, must be the definition's
// id. ExpectedRevision, if set, must be the segment's current revision (0:
// the segment must not be defined through the API yet), or the put is
// refused 409: another editor wrote first.
type RulePutRequest struct {
	Segment          string  `json:"segment,omitempty"`
	Definition       string  `json:"definition"`
	ExpectedRevision *uint64 `json:"expected_revision,omitempty"`
	Author           string  `json:"author,omitempty"`
}

// RulePutReply is the stored revision. State is "rebuilding": the new
// definition is rebuilt from the event log and served once exact (see
// rule.get and segment.get).
type RulePutReply struct {
	Segment  string `json:"segment"`
	Revision uint64 `json:"revision"`
	State    string `json:"state"`
}

// RuleRequest names a segment (rule.get, rule.delete, rule.history).
// ExpectedRevision guards a delete as it does a put; Limit bounds a
// history (default and most: RuleHistoryDepth).
type RuleRequest struct {
	Segment          string  `json:"segment"`
	ExpectedRevision *uint64 `json:"expected_revision,omitempty"`
	Author           string  `json:"author,omitempty"`
	Limit            int     `json:"limit,omitempty"`
}

// RuleHistoryDepth is how many revisions of a segment SEGD_RULES keeps
// (JetStream KV's most).
const RuleHistoryDepth = 64

// Rule is a segment definition and where it stands. Source is "api" (KV)
// or "file" (a --rules file: Definition is then not given, File names
// it). Revision, Author and Time are the KV entry's. State is the
// segment's: "active" (exact), "rebuilding" (a new segment, not served
// yet), "stale" or "failed"; Serving is the revision whose membership is
// served, which is older than Revision while the new one rebuilds.
type Rule struct {
	Segment    string         `json:"segment"`
	Source     string         `json:"source"`
	File       string         `json:"file,omitempty"`
	Definition string         `json:"definition,omitempty"`
	Revision   uint64         `json:"revision"`
	Author     string         `json:"author,omitempty"`
	Time       string         `json:"time,omitempty"`
	State      string         `json:"state"`
	Serving    uint64         `json:"serving_revision"`
	Rebuild    *RebuildStatus `json:"rebuild,omitempty"`
	// LastRebuild is the last rebuild of the segment by this segd that
	// swapped in (absent before one, and after a restart).
	LastRebuild *RebuildSummary `json:"last_rebuild,omitempty"`
}

// RebuildSummary is what a finished rebuild read: the log from FromSeq
// (the first message its windows reach) to ToSeq, Messages and Events of
// it, Live messages applied meanwhile, in TookMS milliseconds.
type RebuildSummary struct {
	Revision uint64 `json:"revision"`
	FromSeq  uint64 `json:"from_seq"`
	ToSeq    uint64 `json:"to_seq"`
	Messages uint64 `json:"messages"`
	Events   uint64 `json:"events"`
	Live     uint64 `json:"live_messages"`
	TookMS   int64  `json:"took_ms"`
}

// RuleListReply lists every segment definition, by id.
type RuleListReply struct {
	Rules []Rule `json:"rules"`
}

// RuleDeleteReply is the revision of the delete marker: the key is gone,
// its history kept.
type RuleDeleteReply struct {
	Segment  string `json:"segment"`
	Revision uint64 `json:"revision"`
}

// RuleRevision is one revision of a segment's definition; Deleted marks a
// delete.
type RuleRevision struct {
	Revision   uint64 `json:"revision"`
	Definition string `json:"definition,omitempty"`
	Author     string `json:"author,omitempty"`
	Time       string `json:"time"`
	Deleted    bool   `json:"deleted,omitempty"`
}

// RuleHistoryReply lists a segment's revisions, oldest first.
type RuleHistoryReply struct {
	Segment   string         `json:"segment"`
	Revisions []RuleRevision `json:"revisions"`
}
