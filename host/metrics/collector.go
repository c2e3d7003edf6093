package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/plugins"
)

// segmentStates are the values of segd_segment_state's state label.
var segmentStates = []string{"active", "rebuilding", api.SegmentStale, api.SegmentFailed}

// collector reads segd's counters at scrape time.
type collector struct{ src Source }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The descriptions of every metric the collector emits.
var (
	dReady        = desc("segd_ready", "1 once segd has applied the events stream as it was at start and rebuilt what it had to.")
	dAppliedSeq   = desc("segd_ingest_applied_seq", "The last events-stream sequence applied.")
	dStreamSeq    = desc("segd_ingest_stream_last_seq", "The events stream's last sequence.")
	dLag          = desc("segd_ingest_lag_messages", "Events-stream messages not yet applied (stream last sequence - applied sequence).")
	dReplayTo     = desc("segd_ingest_replay_to_seq", "The events stream's last sequence at start: segd is ready once it applied it.")
	dBatches      = desc("segd_ingest_batches_total", "Batches applied.")
	dEvents       = desc("segd_ingest_events_total", "Events applied.")
	dProfiles     = desc("segd_ingest_profiles_total", "Profile updates applied.")
	dInvalid      = desc("segd_ingest_invalid_items_total", "Batch items skipped as invalid.")
	dTooNew       = desc("segd_ingest_too_new_events_total", "Events rejected for being further ahead of the clock than the allowed skew.")
	dExpired      = desc("segd_ingest_expired_events_total", "Events dropped for being older than the retention.")
	dNotBatches   = desc("segd_ingest_not_batches_total", "Events-stream messages that were not batches.")
	dUploads      = desc("segd_ingest_uploads_total", "Static segment uploads applied.")
	dRejUploads   = desc("segd_ingest_rejected_uploads_total", "Uploads for a segment that was not static when applied.")
	dRefused      = desc("segd_ingest_refused_items_total", "Items refused because the user id space was full.")
	dRefusedVals  = desc("segd_ingest_refused_values_total", "Events left out of a distinct condition whose value table was full.")
	dRetries      = desc("segd_ingest_retries_total", "Failed attempts to apply a message or store its dead letter that were tried again.")
	dGaveUp       = desc("segd_ingest_gave_up_total", "Messages acked unapplied after every attempt failed (each dead-lettered).")
	dDeadLetters  = desc("segd_ingest_dead_letters_total", "Messages copied to the dead-letter stream by this run.")
	dLostToDLQ    = desc("segd_ingest_lost_to_dlq_total", "Messages whose dead letter could not be stored.")
	dAnaDropped   = desc("segd_analysis_dropped_events_total", "Events the analysis index did not keep (its event-name dictionary was full).")
	dUsers        = desc("segd_users", "Distinct users seen.")
	dOwned        = desc("segd_partitions_owned", "Partitions this host runs, when several active hosts share them (--host-id with --partitions > 1).")
	dPartitions   = desc("segd_partitions", "Partitions the users are split into (--partitions; the events stream's metadata segd_partitions).")
	dClockMoves   = desc("segd_clock_moves_total", "Clock steps that moved the rule windows.")
	dClockUsers   = desc("segd_clock_judgements_total", "(Segment, user) judgements caused by the clock moving the windows.")
	dClockSeconds = desc("segd_clock_seconds_total", "Time spent moving the windows with the clock.")
	dApplied      = desc("segd_apply_messages_total", "Events-stream messages applied by the engine.")
	dApplySeconds = desc("segd_apply_seconds_total", "Time the engine spent applying messages.")
	dSegMembers   = desc("segd_segment_members", "A segment's size (0 while it is rebuilding).", "segment")
	dSegState     = desc("segd_segment_state", "1 for the segment's state (active, rebuilding, stale, failed), 0 for the others.", "segment", "state")
	dSegEvals     = desc("segd_segment_evaluations_total", "Users a segment's rule judged.", "segment")
	dSegEvalErrs  = desc("segd_segment_eval_errors_total", "Events or profiles a segment's predicates could not judge (counted as non-matches).", "segment")
	dRebuildSeq   = desc("segd_rebuild_seq", "A rebuilding segment's progress: the stream sequence replayed so far.", "segment")
	dRebuildTo    = desc("segd_rebuild_to_seq", "The stream sequence a rebuilding segment replays to.", "segment")
	dPlugUp       = desc("segd_plugin_up", "1 when the plugin is ok, 0 when failed or invalid.", "plugin")
	dPlugBatches  = desc("segd_plugin_batches_total", "Batches a plugin judged.", "plugin")
	dPlugItems    = desc("segd_plugin_items_total", "Items a plugin judged.", "plugin")
	dPlugTimeouts = desc("segd_plugin_timeouts_total", "Plugin calls past their deadline.", "plugin")
	dPlugTraps    = desc("segd_plugin_traps_total", "Plugin calls that trapped.", "plugin")
	dPlugGuestErr = desc("segd_plugin_guest_errors_total", "Plugin calls that returned an error.", "plugin")
	dPlugRetries  = desc("segd_plugin_retries_total", "Plugin calls retried on a fresh instance.", "plugin")
	dPlugRecycled = desc("segd_plugin_recycled_total", "Plugin instances recycled.", "plugin")
	dPlugInst     = desc("segd_plugin_instances", "Warm plugin instances now.", "plugin")
	dFeedChanges  = desc("segd_feed_published_changes_total", "Membership changes stored in the change feed.")
	dFeedMessages = desc("segd_feed_published_messages_total", "Change feed messages stored.")
	dFeedBacklog  = desc("segd_feed_backlog_changes", "Changes waiting to be stored in the change feed.")
	dFeedBytes    = desc("segd_feed_backlog_bytes", "Bytes of changes waiting to be stored in the change feed.")
	dFeedMaxBytes = desc("segd_feed_backlog_max_bytes", "The backlog bound past which ingest waits for the feed.")
	dFeedWaits    = desc("segd_feed_waits_total", "Times ingest waited for the change feed's backlog to shrink.")
	dFeedErrors   = desc("segd_feed_publish_errors_total", "Change feed publishes JetStream did not acknowledge (each retried).")
	dFeedUnpub    = desc("segd_feed_unpublishable_changes_total", "Changes too large for one NATS message.")
	dSnapWritten  = desc("segd_snapshots_written_total", "Snapshots written by this run.")
	dSnapFailures = desc("segd_snapshot_failures_total", "Snapshots that failed.")
	dSnapSkipped  = desc("segd_snapshots_skipped_total", "Snapshots skipped because they would not fit in memory.")
	dSnapBytes    = desc("segd_snapshot_last_size_bytes", "The size of the latest snapshot.")
	dSnapPause    = desc("segd_snapshot_last_pause_seconds", "How long ingest paused while the latest snapshot was captured.")
	dSnapWrite    = desc("segd_snapshot_last_write_seconds", "How long encoding and writing the latest snapshot took.")
	dSnapSeq      = desc("segd_snapshot_last_seq", "The stream sequence of the latest snapshot.")
	dScrapeErrors = desc("segd_metrics_source_errors", "1 when a scrape could not read the events stream's last sequence (the lag is then missing).")
)

var allDescs = []*prometheus.Desc{dReady, dAppliedSeq, dStreamSeq, dLag, dReplayTo, dBatches, dEvents, dProfiles,
	dInvalid, dTooNew, dExpired, dNotBatches, dUploads, dRejUploads, dRefused, dRefusedVals, dRetries, dGaveUp,
	dDeadLetters, dLostToDLQ, dAnaDropped, dUsers, dOwned, dPartitions, dClockMoves, dClockUsers, dClockSeconds, dApplied, dApplySeconds,
	dSegMembers, dSegState, dSegEvals, dSegEvalErrs, dRebuildSeq, dRebuildTo, dPlugUp, dPlugBatches, dPlugItems,
	dPlugTimeouts, dPlugTraps, dPlugGuestErr, dPlugRetries, dPlugRecycled, dPlugInst, dFeedChanges, dFeedMessages,
	dFeedBacklog, dFeedBytes, dFeedMaxBytes, dFeedWaits, dFeedErrors, dFeedUnpub, dSnapWritten, dSnapFailures, dSnapSkipped,
	dSnapBytes, dSnapPause, dSnapWrite, dSnapSeq, dScrapeErrors}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// streamTimeout bounds the scrape's one request to JetStream.
const streamTimeout = 2 * time.Second

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st := c.src.Status()
	gauge(dReady, b2f(st.Ready))
	gauge(dAppliedSeq, float64(st.LastSeq))
	gauge(dReplayTo, float64(st.ReplayTo))
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	last, err := c.src.StreamLastSeq(ctx)
	cancel()
	if err == nil {
		gauge(dStreamSeq, float64(last))
		gauge(dLag, float64(last-min(last, st.LastSeq)))
	}
	gauge(dScrapeErrors, b2f(err != nil))
	counter(dBatches, st.Batches)
	counter(dEvents, st.Events)
	counter(dProfiles, st.Profiles)
	counter(dInvalid, st.InvalidItems)
	counter(dTooNew, st.TooNew)
	counter(dExpired, st.Expired)
	counter(dNotBatches, st.NotBatches)
	counter(dUploads, st.Uploads)
	counter(dRejUploads, st.RejectedUploads)
	counter(dRefused, st.RefusedItems)
	counter(dRefusedVals, st.RefusedValues)
	counter(dRetries, st.IngestRetries)
	counter(dGaveUp, st.GaveUp)
	counter(dDeadLetters, st.DeadLetters)
	counter(dLostToDLQ, st.LostToDLQ)
	counter(dAnaDropped, st.AnalysisDropped)
	gauge(dUsers, float64(st.Users))
	gauge(dPartitions, float64(max(1, len(st.Partitions))))
	if st.OwnedPartitions != nil {
		gauge(dOwned, float64(len(st.OwnedPartitions)))
	}

	w := c.src.Work()
	counter(dClockMoves, w.ClockMoves)
	counter(dClockUsers, w.ClockJudged)
	ch <- prometheus.MustNewConstMetric(dClockSeconds, prometheus.CounterValue, w.ClockTime.Seconds())
	counter(dApplied, w.Applied)
	ch <- prometheus.MustNewConstMetric(dApplySeconds, prometheus.CounterValue, w.ApplyTime.Seconds())

	for _, s := range c.src.Segments() {
		gauge(dSegMembers, float64(s.Size), s.ID)
		for _, state := range segmentStates {
			gauge(dSegState, b2f(s.Status == state), s.ID, state)
		}
		counter(dSegEvals, w.Evaluations[s.ID], s.ID)
		counter(dSegEvalErrs, s.EvalErrors, s.ID)
	}
	for _, r := range st.Rebuilding {
		gauge(dRebuildSeq, float64(r.Seq), r.Segment)
		gauge(dRebuildTo, float64(r.ToSeq), r.Segment)
	}
	for _, p := range c.src.Plugins() {
		gauge(dPlugUp, b2f(p.State == plugins.StateOK), p.Name)
		counter(dPlugBatches, p.Batches, p.Name)
		counter(dPlugItems, p.Items, p.Name)
		counter(dPlugTimeouts, p.Timeouts, p.Name)
		counter(dPlugTraps, p.Traps, p.Name)
		counter(dPlugGuestErr, p.GuestErrors, p.Name)
		counter(dPlugRetries, p.Retries, p.Name)
		counter(dPlugRecycled, p.Recycled, p.Name)
		gauge(dPlugInst, float64(p.Instances), p.Name)
	}
	if f := st.Feed; f != nil {
		counter(dFeedChanges, f.Published)
		counter(dFeedMessages, f.Messages)
		gauge(dFeedBacklog, float64(f.Backlog))
		gauge(dFeedBytes, float64(f.BacklogBytes))
		gauge(dFeedMaxBytes, float64(f.MaxBacklogBytes))
		counter(dFeedWaits, f.Waits)
		counter(dFeedErrors, f.Failed)
		counter(dFeedUnpub, f.Unpublishable)
	}
	if sn := st.Snapshot; sn != nil {
		counter(dSnapWritten, sn.Written)
		counter(dSnapFailures, sn.Failures)
		counter(dSnapSkipped, sn.Skipped)
		if sn.Written > 0 {
			gauge(dSnapBytes, float64(sn.LastBytes))
			gauge(dSnapPause, seconds(sn.LastPause))
			gauge(dSnapWrite, seconds(sn.LastWrite))
			gauge(dSnapSeq, float64(sn.LastSeq))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// seconds reads a status duration ("1.5ms"); 0 when empty or unreadable.
func seconds(s string) float64 {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0
	}
	return d.Seconds()
}
