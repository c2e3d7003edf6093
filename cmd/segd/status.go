package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segd/segd/bus/api"
)

// printStatus writes every field of a status reply for people: counters
// with the error that goes with them, then the sections (rebuilds, stale
// segments, plugins, change feed, snapshots) that have something to say.
func printStatus(w io.Writer, st *api.StatusReply) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name string, v any, detail ...string) {
		fmt.Fprintf(tw, "%s\t%v\t%s\n", name, v, strings.Join(nonEmpty(detail), "; "))
	}
	ready := "no: replaying the event log"
	if st.Ready {
		ready = "yes"
	} else if len(st.Rebuilding) > 0 && st.LastSeq >= st.ReplayTo {
		ready = "no: rebuilding segments"
	}
	row("ready", ready)
	switch {
	case st.Host != "" && st.OwnedPartitions != nil:
		// Several active hosts share the partitions.
		row("host", st.Host, fmt.Sprintf("runs partitions %v; the others run elsewhere", st.OwnedPartitions))
	case st.Host != "":
		row("host", st.Host, "owns the stream (the others on this NATS stand by)")
	}
	row("clock", st.Clock)
	replay := "nothing to replay at start"
	if st.ReplayTo >= st.ReplayFrom && st.ReplayTo > 0 {
		replay = fmt.Sprintf("replayed from %d to %d at start", st.ReplayFrom, st.ReplayTo)
	}
	row("last stream seq", st.LastSeq, replay)
	row("batches", st.Batches)
	row("events", st.Events)
	row("profile updates", st.Profiles)
	row("users", st.Users)
	row("uploads", st.Uploads, countNote(st.RejectedUploads, "rejected (segment no longer static)"))
	// Input segd could not use, with the first or latest reason.
	row("invalid items", st.InvalidItems, st.FirstInvalid)
	row("not batches", st.NotBatches, st.LastNotBatch)
	row("too far ahead", st.TooNew)
	row("expired (older than retention)", st.Expired)
	row("dead letters", st.DeadLetters, inStream(st.DeadLetterStream), countNote(st.DeadLetterRecords, "only a record (too large to copy)"))
	// Failures that need a person's eye, shown only when they happened.
	for _, c := range []struct {
		name   string
		n      uint64
		detail []string
	}{
		{"refused (id space full)", st.RefusedItems + st.RefusedValues, []string{countNote(st.RefusedValues, "distinct values"), st.FirstRefused}},
		{"not indexed for analysis", st.AnalysisDropped, []string{st.FirstAnalysisDropped}},
		{"ingest retries", st.IngestRetries, []string{firstLast(st.FirstIngestError, st.LastIngestError)}},
		{"gave up (dead-lettered)", st.GaveUp, nil},
		{"lost to the DLQ (see the log)", st.LostToDLQ, nil},
	} {
		if c.n > 0 || len(nonEmpty(c.detail)) > 0 {
			row(c.name, c.n, c.detail...)
		}
	}
	feedRows(row, st.Feed)
	snapshotRows(row, st.Snapshot)
	tw.Flush()
	if len(st.Rebuilding) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REBUILDING\tSEQ\tTO SEQ")
		for _, r := range st.Rebuilding {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Segment, r.Seq, r.ToSeq)
		}
		tw.Flush()
	}
	if len(st.Stale) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NOT SERVED\tSTATE\tSINCE SEQ\tREBUILDS\tNEXT REBUILD\tPLUGINS\tWAITING FOR\tERROR")
		for _, s := range st.Stale {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d of %d\t%s\t%s\t%s\t%s\n", s.Segment, s.State, s.Seq, s.Rebuilds, s.MaxRebuilds,
				s.NextRebuild, strings.Join(s.Plugins, ","), s.Waiting, s.Error)
		}
		tw.Flush()
	}
	if len(st.Plugins) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PLUGIN\tVERSION\tABI\tSTATE\tINTERRUPT\tBATCHES\tITEMS\tTIMEOUTS\tTRAPS\tRETRIES\tINSTANCES\tLAST ERROR")
		for _, p := range st.Plugins {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Name, shortVersion(p.Version), p.ABI,
				p.State, p.Interrupt, p.Batches, p.Items, p.Timeouts, p.Traps, p.Retries, p.Instances, p.LastError)
		}
		tw.Flush()
	}
	for _, p := range st.Partitions {
		// Each partition's progress, when segd runs several.
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		row := func(name string, v any, detail ...string) {
			fmt.Fprintf(tw, "%s\t%v\t%s\n", name, v, strings.Join(nonEmpty(detail), "; "))
		}
		ready := "not ready"
		if p.Ready {
			ready = "ready"
		}
		row(fmt.Sprintf("partition %d of %d", p.Partition, len(st.Partitions)), ready,
			fmt.Sprintf("last stream seq %d", p.LastSeq), fmt.Sprintf("replayed from %d to %d at start", p.ReplayFrom, p.ReplayTo),
			fmt.Sprintf("%d users, %d events", p.Users, p.Events),
			countNote(uint64(p.Rebuilding), "segments rebuilding"), countNote(uint64(p.Stale), "segments not served"))
		feedRows(row, p.Feed)
		snapshotRows(row, p.Snapshot)
		tw.Flush()
	}
}

// feedRows prints the change feed's publisher.
func feedRows(row func(string, any, ...string), f *api.FeedStatus) {
	if f == nil {
		return
	}
	row("change feed", fmt.Sprintf("%d changes in %d messages", f.Published, f.Messages),
		fmt.Sprintf("backlog %d changes, %s of %s", f.Backlog, bytesText(f.BacklogBytes), bytesText(f.MaxBacklogBytes)),
		countNote(f.Waits, "waits of ingest"), waitingSince(f.WaitingSince),
		countNote(f.Failed, "failed publishes (retried)"), f.LastError,
		countNote(f.Suppressed, "already published by an earlier run"),
		countNote(f.Unpublishable, "too large to publish"))
}

// snapshotRows prints the snapshot loaded at start and the last written.
func snapshotRows(row func(string, any, ...string), sn *api.SnapshotStatus) {
	if sn == nil {
		return
	}
	loaded := "none (full replay)"
	if sn.Loaded != "" {
		loaded = fmt.Sprintf("%s (seq %d)", sn.Loaded, sn.LoadedSeq)
	}
	row("snapshot loaded", loaded, listNote("rebuilt", sn.Rebuilt), listNote("rejected", sn.Rejected))
	every := ""
	if sn.IntervalMs > 0 {
		every = "every " + (time.Duration(sn.IntervalMs) * time.Millisecond).String()
	}
	last := ""
	if sn.LastFile != "" {
		last = fmt.Sprintf("last %s at %s: seq %d, %s, ingest paused %s, write %s", sn.LastFile, sn.LastTime, sn.LastSeq,
			bytesText(uint64(sn.LastBytes)), sn.LastPause, sn.LastWrite)
	}
	row("snapshots written", sn.Written, every, last, countNote(sn.Failures, "failed"), sn.LastError, countNote(sn.Skipped, "skipped (would not fit in memory)"), sn.LastSkip)
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func countNote(n uint64, what string) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d %s", n, what)
}

func listNote(what string, list []string) string {
	if len(list) == 0 {
		return ""
	}
	return what + ": " + strings.Join(list, ", ")
}

func inStream(s string) string {
	if s == "" {
		return ""
	}
	return "in stream " + s
}

func waitingSince(s string) string {
	if s == "" {
		return ""
	}
	return "ingest waiting since " + s
}

func firstLast(first, last string) string {
	switch {
	case first == "" || first == last:
		return last
	case last == "":
		return "first: " + first
	}
	return "first: " + first + "; latest: " + last
}

// shortVersion abbreviates a sha256 hex version as git does.
func shortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
