package host

import "github.com/segd/segd/bus/api"

// addIngestStatus adds the consumer's, the dead-letter stream's and the
// analysis index's failure counters to a status reply.
func (s *Server) addIngestStatus(st *api.StatusReply) {
	if s.dlq != nil && s.part.n == 0 { // shared by the partitions
		st.DeadLetterRecords = s.dlq.Records()
	}
	if s.analysis != nil {
		as := s.analysis.StatsNow() // never waits for a snapshot holding the index
		st.AnalysisDropped, st.FirstAnalysisDropped = as.Dropped, as.FirstDropped
	}
	if s.consumer != nil {
		cs := s.consumer.Stats()
		st.IngestRetries, st.GaveUp, st.LostToDLQ = cs.Retries, cs.GaveUp, cs.LostToDLQ
		st.FirstIngestError, st.LastIngestError = cs.FirstError, cs.LastError
	}
}
