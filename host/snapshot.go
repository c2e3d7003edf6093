package host

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/internal/snapio"
)

// Snapshot file format, version 1:
//
//	"SEGDSNAP"  8 bytes magic
//	version     uint32 little-endian (1)
//	length      uint64 little-endian, of the payload
//	checksum    uint32 little-endian, CRC-32C of the payload
//	payload     three length-prefixed sections: meta (JSON), engine
//	            state (host/engine), analysis index (host/analysis)
const (
	snapMagic   = "SEGDSNAP"
	snapVersion = 1
	snapHeader  = 8 + 4 + 8 + 4
	snapPrefix  = "snapshot-"
	snapSuffix  = ".segd"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapMeta is the snapshot's first section.
type snapMeta struct {
	// Seq is the last applied SEGD_EVENTS sequence.
	Seq uint64 `json:"seq"`
	// Clock is the engine's clock (Unix ms).
	Clock int64 `json:"clock"`
	// Written is when the snapshot was taken.
	Written time.Time `json:"written"`
	// Stream identifies the events stream by its creation time: a snapshot
	// of a stream that was deleted and created again is of no use.
	Stream time.Time `json:"stream"`
	// Segments maps each segment to its fingerprint.
	Segments map[string]string `json:"segments"`
	Version  string            `json:"version"`
}

// snapshots writes and finds snapshot files under DataDir/snapshots.
type snapshots struct {
	dir    string
	keep   int
	stream time.Time

	mu       sync.Mutex // one snapshot at a time: never two captures
	sizeHint int        // the payload size of the last snapshot

	// memLimit caps the memory a snapshot may need (0: memAvailable's);
	// memAvailable reads the memory the system has available.
	memLimit     int64
	memAvailable func() (int64, error)

	smu    sync.Mutex // guards status
	status api.SnapshotStatus

	stop chan struct{}
	done chan struct{}
}

func snapshotName(seq uint64) string { return fmt.Sprintf("%s%020d%s", snapPrefix, seq, snapSuffix) }

// list returns the snapshot files, newest (highest sequence) first.
func (sn *snapshots) list() ([]string, error) {
	entries, err := os.ReadDir(sn.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		seq  uint64
	}
	var files []file
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, snapPrefix) || !strings.HasSuffix(n, snapSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, snapPrefix), snapSuffix), 10, 64)
		if err != nil {
			continue
		}
		files = append(files, file{n, seq})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].seq > files[j].seq })
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = filepath.Join(sn.dir, f.name)
	}
	return out, nil
}

// readSnapshotFile reads a snapshot file and checks its header and
// checksum; it returns the payload.
func readSnapshotFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < snapHeader || string(data[:8]) != snapMagic {
		return nil, errors.New("not a segd snapshot (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != snapVersion {
		return nil, fmt.Errorf("snapshot format version %d, this segd reads %d", v, snapVersion)
	}
	n := binary.LittleEndian.Uint64(data[12:])
	payload := data[snapHeader:]
	if uint64(len(payload)) != n {
		return nil, fmt.Errorf("truncated: %d payload bytes, header says %d", len(payload), n)
	}
	if sum := crc32.Checksum(payload, castagnoli); sum != binary.LittleEndian.Uint32(data[20:]) {
		return nil, fmt.Errorf("checksum mismatch (crc32c %08x, header says %08x)", sum, binary.LittleEndian.Uint32(data[20:]))
	}
	return payload, nil
}

// writeFileAtomic writes header and payload to dir/name through a
// temporary file in the same directory: fsync, rename, fsync the
// directory. A crash at any point leaves the old file or the new one.
func writeFileAtomic(dir, name string, payload []byte) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename it is gone already
	var hdr [snapHeader]byte
	copy(hdr[:], snapMagic)
	binary.LittleEndian.PutUint32(hdr[8:], snapVersion)
	binary.LittleEndian.PutUint64(hdr[12:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(hdr[20:], crc32.Checksum(payload, castagnoli))
	_, err = f.Write(hdr[:])
	if err == nil {
		_, err = f.Write(payload)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return 0, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	err = d.Sync()
	d.Close()
	return int64(len(payload) + snapHeader), err
}

// Snapshot writes a snapshot of the whole state now and returns its path.
// Ingest pauses only while the state is captured (see the status's
// last_pause): the engine shares its state copy-on-write (engine.Capture)
// and the analysis index is held, its new events queued
// (analysis.CaptureState); both are encoded, and the file written and
// synced, while ingest goes on. Readers never wait for any of it.
func (s *Server) Snapshot(ctx context.Context) (string, error) {
	if s.isFront() {
		return s.snapshotAll(ctx) // partition.go
	}
	sn := s.snaps
	if sn == nil || s.engine == nil {
		return "", errors.New("snapshots are not set up")
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if err := sn.fits(); err != nil {
		sn.smu.Lock()
		sn.status.Skipped++
		sn.status.LastSkip = err.Error()
		sn.smu.Unlock()
		s.cfg.Logger.Warn("snapshot skipped", "reason", err)
		return "", err
	}
	w := &snapio.Writer{Buf: make([]byte, 0, sn.sizeHint+sn.sizeHint/8)}
	var meta snapMeta
	var pause time.Duration
	// hand passes the captures from the writer to this goroutine. Do
	// returns when ctx ends even if fn runs on: then fn, finding hand
	// abandoned, releases what it captured itself (on the writer), and a
	// capture fn handed over that Snapshot does not use is released here.
	var hand struct {
		sync.Mutex
		abandoned bool
		engine    *engine.Capture
		index     *analysis.StateCapture
	}
	err := s.engine.Do(ctx, func() error {
		t0 := time.Now()
		defer func() { pause = time.Since(t0) }()
		meta = snapMeta{Seq: s.engine.LastSeq(), Clock: s.engine.ClockMillis(), Written: time.Now().UTC(),
			Stream: sn.stream, Segments: map[string]string{}, Version: s.cfg.Version}
		for _, info := range s.engine.Segments() {
			meta.Segments[info.ID] = s.engine.Fingerprint(info.ID)
		}
		// The analysis index is held as it is now (the events observed
		// from here on are queued) and encoded after the pause, like the
		// engine's capture.
		index := s.analysis.CaptureState()
		capture, err := s.engine.Capture()
		if err != nil {
			index.Release()
			return fmt.Errorf("engine state: %w", err)
		}
		hand.Lock()
		defer hand.Unlock()
		if hand.abandoned {
			capture.Release()
			index.Release()
			return nil
		}
		hand.engine, hand.index = capture, index
		return nil
	})
	hand.Lock()
	hand.abandoned = true
	capture, index := hand.engine, hand.index
	hand.Unlock()
	t0 := time.Now()
	if capture != nil {
		if err == nil {
			err = encodeSnapshot(ctx, w, meta, capture, index)
		} else {
			index.Release()
		}
		// Until released, the engine copies per-user state before changing
		// it: release it even when ctx ended the encoding. If the engine
		// cannot be reached, the next capture's release ends it.
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = s.engine.Do(rctx, func() error { capture.Release(); return nil })
		cancel()
	}
	if err == nil {
		err = s.feedCovers(ctx, meta.Seq)
	}
	if err == nil {
		sn.sizeHint = len(w.Buf)
		name := snapshotName(meta.Seq)
		var size int64
		size, err = writeFileAtomic(sn.dir, name, w.Buf)
		if err == nil {
			sn.prune()
			path := filepath.Join(sn.dir, name)
			s.pushSnapshot(ctx, path, meta.Seq) // the Object Store's copy, with several hosts (ownership.go)
			sn.smu.Lock()
			st := &sn.status
			st.Written++
			st.LastFile, st.LastSeq, st.LastBytes = path, meta.Seq, size
			st.LastTime = meta.Written.Format(time.RFC3339Nano)
			st.LastPause, st.LastWrite = pause.Round(time.Microsecond).String(), time.Since(t0).Round(time.Microsecond).String()
			sn.smu.Unlock()
			s.cfg.Logger.Debug("snapshot written", "file", path, "seq", meta.Seq, "bytes", size, "pause", pause, "write", time.Since(t0))
			return path, nil
		}
	}
	sn.smu.Lock()
	sn.status.Failures++
	sn.status.LastError = err.Error()
	sn.smu.Unlock()
	s.cfg.Logger.Error("snapshot failed", "error", err)
	return "", fmt.Errorf("snapshot: %w", err)
}

// encodeSnapshot lays out a snapshot's payload: the metadata, the engine
// state (encoded from the capture) and the analysis index.
// The index is encoded beside the engine state, and released in any case;
// when ctx ends first its encoding is left to finish (and release the
// index) on its own.
func encodeSnapshot(ctx context.Context, w *snapio.Writer, meta snapMeta, c *engine.Capture, ix *analysis.StateCapture) error {
	index := &snapio.Writer{}
	indexed := make(chan error, 1)
	go func() { indexed <- ix.WriteTo(index) }()
	mj, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	w.Bytes(mj)
	mark := w.Begin()
	if err := c.EncodeContext(ctx, w); err != nil {
		return fmt.Errorf("engine state: %w", err)
	}
	w.End(mark)
	select {
	case err := <-indexed:
		if err != nil {
			return fmt.Errorf("analysis index: %w", err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	mark = w.Begin()
	w.Buf = append(w.Buf, index.Buf...)
	w.End(mark)
	return nil
}

// prune keeps the newest sn.keep snapshots and removes stale temporary
// files of crashed writes.
func (sn *snapshots) prune() {
	files, err := sn.list()
	if err != nil {
		return
	}
	for _, f := range files[min(len(files), sn.keep):] {
		_ = os.Remove(f)
	}
}

// removeTemps deletes the temporary files a crash left behind; call it
// before any snapshot is being written.
func (sn *snapshots) removeTemps() {
	tmps, _ := filepath.Glob(filepath.Join(sn.dir, ".tmp-"+snapPrefix+"*"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
}

func (sn *snapshots) reject(path string, err error) {
	sn.smu.Lock()
	sn.status.Rejected = append(sn.status.Rejected, fmt.Sprintf("%s: %v", filepath.Base(path), err))
	sn.smu.Unlock()
}

func (sn *snapshots) statusCopy() *api.SnapshotStatus {
	sn.smu.Lock()
	defer sn.smu.Unlock()
	st := sn.status
	st.Rejected = append([]string(nil), st.Rejected...)
	return &st
}

// restoreResult is what loading a snapshot gave.
type restoreResult struct {
	path  string
	meta  snapMeta
	stale []string // segments to rebuild
}

// restore tries the snapshots newest first. For each it builds a fresh
// engine and index (newEngine) and loads the file into them; the first
// that loads whole wins. A corrupt, unreadable or foreign snapshot is
// logged, reported in the status and skipped. It returns nil when no
// snapshot could be used: the caller replays the whole log into the
// engine newEngine made last.
func (s *Server) restore(info *jetstream.StreamInfo, newEngine func()) *restoreResult {
	sn := s.snaps
	files, err := sn.list()
	if err != nil {
		s.cfg.Logger.Error("cannot list snapshots; replaying the whole log", "dir", sn.dir, "error", err)
		return nil
	}
	for _, path := range files {
		res, err := s.restoreFile(path, info)
		if err == nil {
			return res
		}
		sn.reject(path, err)
		s.cfg.Logger.Error("snapshot not used", "file", path, "error", err)
		newEngine() // discard what a partial load left
	}
	return nil
}

func (s *Server) restoreFile(path string, info *jetstream.StreamInfo) (*restoreResult, error) {
	payload, err := readSnapshotFile(path)
	if err != nil {
		return nil, err
	}
	r := snapio.NewReader(payload)
	var meta snapMeta
	if err := json.Unmarshal(r.Bytes(), &meta); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	switch {
	case !meta.Stream.Equal(info.Created):
		return nil, fmt.Errorf("taken from another %s stream (created %s; this one %s)", info.Config.Name,
			meta.Stream.Format(time.RFC3339), info.Created.Format(time.RFC3339))
	case meta.Seq > info.State.LastSeq:
		return nil, fmt.Errorf("at sequence %d, beyond the stream's last %d", meta.Seq, info.State.LastSeq)
	}
	// The engine's state and the analysis index are independent sections:
	// load them side by side.
	engineState, indexState := r.Section(), r.Section()
	if err := r.Done(); err != nil {
		return nil, err
	}
	indexed := make(chan error, 1)
	go func() { indexed <- s.analysis.Restore(indexState) }()
	res, err := s.engine.Restore(engineState)
	if ierr := <-indexed; err == nil && ierr != nil {
		return nil, ierr
	}
	if err != nil {
		return nil, fmt.Errorf("engine state: %w", err)
	}
	if res.Seq != meta.Seq {
		return nil, fmt.Errorf("engine state at sequence %d, meta says %d", res.Seq, meta.Seq)
	}
	if meta.Seq+1 < info.State.FirstSeq {
		s.cfg.Logger.Warn("events after the snapshot have left the stream (retention): they are lost",
			"snapshot_seq", meta.Seq, "stream_first_seq", info.State.FirstSeq)
	}
	// The first snapshot of this run is estimated from the one loaded.
	s.snaps.mu.Lock()
	s.snaps.sizeHint = len(payload)
	s.snaps.mu.Unlock()
	return &restoreResult{path: path, meta: meta, stale: res.Stale}, nil
}

// runSnapshots writes a snapshot every interval while there is something
// new, until stopSnapshots. The interval runs from the end of one snapshot
// to the start of the next: a snapshot that takes longer than the
// interval is not followed by another at once, so that ingest and memory
// get the interval between two.
func (s *Server) runSnapshots(interval time.Duration) {
	sn := s.snaps
	defer close(sn.done)
	t := time.NewTimer(interval)
	defer t.Stop()
	last := s.engine.Status().LastSeq
	for {
		select {
		case <-sn.stop:
			return
		case <-t.C:
		}
		if seq := s.engine.Status().LastSeq; seq != last {
			if _, err := s.Snapshot(context.Background()); err == nil {
				last = seq
			}
		}
		t.Reset(interval)
	}
}

// errSkipped wraps the reason a snapshot was not taken.
var errSkipped = errors.New("snapshot skipped")

// fits reports, as an errSkipped error, a snapshot that would not fit in
// memory: it needs about twice the last one's size (the encoded payload,
// and the state the writer copies while it is encoded, at most the same
// again), which must be under the configured limit or the memory the
// system has available. The first snapshot of a run that loaded none has
// no estimate and is taken.
func (sn *snapshots) fits() error {
	if sn.sizeHint == 0 {
		return nil
	}
	need := 2 * int64(sn.sizeHint)
	limit, what := sn.memLimit, "the configured limit"
	if limit <= 0 {
		if sn.memAvailable == nil {
			return nil
		}
		avail, err := sn.memAvailable()
		if err != nil {
			return nil // cannot tell: take it, as before there was a check
		}
		limit, what = avail, "the memory available"
	}
	if need > limit {
		return fmt.Errorf("%w: it needs about %d MB (twice the last snapshot's %d MB), more than %s (%d MB)",
			errSkipped, need>>20, sn.sizeHint>>20, what, limit>>20)
	}
	return nil
}

// memAvailable reads MemAvailable from /proc/meminfo: the memory the
// system can give without swapping.
func memAvailable() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemAvailable: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable")
}

// shutdownSnapshot writes the snapshot of Close, bounded by
// Config.ShutdownSnapshotTimeout: a stop must not wait minutes for a large
// state to be encoded. Past the deadline the snapshot is abandoned (no
// partial file is left: it is written through a temporary file) and the
// next start loads the previous snapshot and replays the log after it.
// Nothing is written when nothing was applied since the last snapshot.
func (s *Server) shutdownSnapshot() error {
	timeout := s.cfg.ShutdownSnapshotTimeout
	if timeout < 0 {
		return nil
	}
	sn := s.snaps
	sn.smu.Lock()
	covered := max(sn.status.LastSeq, sn.status.LoadedSeq)
	sn.smu.Unlock()
	if seq := s.engine.Status().LastSeq; seq == covered && seq != 0 {
		s.cfg.Logger.Info("no snapshot at shutdown: nothing applied since the last one", "seq", seq)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	path, err := s.Snapshot(ctx)
	switch {
	case err == nil:
		s.cfg.Logger.Info("snapshot written at shutdown", "file", path)
		return nil
	case errors.Is(err, errSkipped):
		return nil // logged and counted
	case ctx.Err() != nil:
		s.cfg.Logger.Warn("snapshot at shutdown abandoned at its deadline: the next start loads the previous snapshot and replays the log after it",
			"timeout", timeout, "error", err)
		return nil
	}
	return err
}

func (s *Server) stopSnapshots() {
	if s.snaps == nil || s.snaps.stop == nil {
		return
	}
	close(s.snaps.stop)
	<-s.snaps.done
	s.snaps.stop = nil
}
