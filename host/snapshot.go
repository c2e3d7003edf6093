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

	mu       sync.Mutex // one snapshot at a time
	sizeHint int

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
// last_pause): bitmaps, counters and profiles are encoded and the per-user
// rule state is cloned (engine.Capture); the clones are encoded, and the
// file written and synced, while ingest goes on.
func (s *Server) Snapshot(ctx context.Context) (string, error) {
	if s.parts != nil {
		return s.snapshotAll(ctx) // partition.go
	}
	sn := s.snaps
	if sn == nil || s.engine == nil {
		return "", errors.New("snapshots are not set up")
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	w := &snapio.Writer{Buf: make([]byte, 0, sn.sizeHint+sn.sizeHint/8)}
	var meta snapMeta
	var pause time.Duration
	var capture *engine.Capture
	index := &snapio.Writer{}
	err := s.engine.Do(ctx, func() error {
		t0 := time.Now()
		defer func() { pause = time.Since(t0) }()
		meta = snapMeta{Seq: s.engine.LastSeq(), Clock: s.engine.ClockMillis(), Written: time.Now().UTC(),
			Stream: sn.stream, Segments: map[string]string{}, Version: s.cfg.Version}
		for _, info := range s.engine.Segments() {
			meta.Segments[info.ID] = s.engine.Fingerprint(info.ID)
		}
		var err error
		if capture, err = s.engine.Capture(); err != nil {
			return fmt.Errorf("engine state: %w", err)
		}
		// The analysis index is bitmaps and packed timelines: cheap to
		// encode in the pause.
		return s.analysis.WriteState(index)
	})
	// Do returns when ctx ends even if fn runs on: what fn sets is then
	// its own, not to be read (an unreleased capture ends at the next
	// one's release).
	ran := err == nil || ctx.Err() == nil
	t0 := time.Now()
	if ran && capture != nil {
		if err == nil {
			err = encodeSnapshot(w, meta, capture, index)
		}
		// Until released, the engine copies per-user state before changing
		// it. If the engine cannot be reached (ctx is done), the next
		// capture's release ends it.
		_ = s.engine.Do(ctx, func() error { capture.Release(); return nil })
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
func encodeSnapshot(w *snapio.Writer, meta snapMeta, c *engine.Capture, index *snapio.Writer) error {
	mj, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	w.Bytes(mj)
	mark := w.Begin()
	if err := c.Encode(w); err != nil {
		return fmt.Errorf("engine state: %w", err)
	}
	w.End(mark)
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
	res, err := s.engine.Restore(r.Section())
	if err != nil {
		return nil, fmt.Errorf("engine state: %w", err)
	}
	if res.Seq != meta.Seq {
		return nil, fmt.Errorf("engine state at sequence %d, meta says %d", res.Seq, meta.Seq)
	}
	if err := s.analysis.Restore(r.Section()); err != nil {
		return nil, err
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if meta.Seq+1 < info.State.FirstSeq {
		s.cfg.Logger.Warn("events after the snapshot have left the stream (retention): they are lost",
			"snapshot_seq", meta.Seq, "stream_first_seq", info.State.FirstSeq)
	}
	return &restoreResult{path: path, meta: meta, stale: res.Stale}, nil
}

// runSnapshots writes a snapshot every interval while there is something
// new, until stopSnapshots.
func (s *Server) runSnapshots(interval time.Duration) {
	sn := s.snaps
	defer close(sn.done)
	t := time.NewTicker(interval)
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
	}
}

func (s *Server) stopSnapshots() {
	if s.snaps == nil || s.snaps.stop == nil {
		return
	}
	close(s.snaps.stop)
	<-s.snaps.done
	s.snaps.stop = nil
}
