package rules

// Batch is one decoded ingest message: events and profile updates, plus what
// had to be skipped. Items keep their order within each slice.
type Batch struct {
	Events   []Event
	Profiles []ProfileUpdate
	// Invalid counts the items that were skipped because they were not valid
	// events or profile updates.
	Invalid int
	// FirstInvalid describes the first skipped item, e.g.
	// `item 3: "time": cannot parse "yesterday" as RFC 3339 or Unix milliseconds`.
	FirstInvalid string
}
