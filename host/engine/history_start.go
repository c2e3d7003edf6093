package engine

// HistoryStart returns the first calendar day (YYYY-MM-DD) of a segment's
// recorded history: the day segd first applied a change to it. The days
// before it show size 0 because nothing was recorded then, not because the
// segment was empty: a first start over an existing log records the whole
// replay on the day of the replay. Empty when nothing is recorded yet.
func (e *Engine) HistoryStart(segment string) string {
	s, ok := e.ids()[segment]
	if !ok {
		return ""
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(s.history) == 0 {
		return ""
	}
	return s.history[0].day.String()
}
