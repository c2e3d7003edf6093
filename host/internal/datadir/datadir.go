// Package datadir locks segd's data directory, so that one process at a
// time keeps its JetStream store and snapshots there.
//
// The lock is an advisory flock(2) on DIR/segd.lock, held while the
// process runs: the kernel drops it when the process ends, however it
// ends, so a crash leaves no stale lock behind. The file also says who
// holds it (pid, host, start time), which a refused start reports. The
// file is never removed: removing it would let a second process lock a
// new file while a third still holds the old one.
package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LockName is the lock file's name inside the data dir.
const LockName = "segd.lock"

// Holder is what a lock file says about the process that holds it.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// LockedError is returned by Acquire when another process holds the lock.
type LockedError struct {
	// Path is the lock file.
	Path string
	// Holder is what the lock file says; zero when it could not be read
	// (e.g. the holder had not written it yet).
	Holder Holder
}

func (e *LockedError) Error() string {
	dir := filepath.Dir(e.Path)
	who := "another process (the lock file does not say which yet)"
	if h := e.Holder; h.PID != 0 {
		who = fmt.Sprintf("another segd: pid %d on host %s, started %s", h.PID, h.Host, h.Started.Format(time.RFC3339))
	}
	return fmt.Sprintf("data dir %s is in use by %s (lock file %s); stop that segd or use another data dir", dir, who, e.Path)
}

// Lock is a held data dir lock.
type Lock struct {
	f *os.File
}

// Acquire creates dir if needed and locks it for this process, writing
// holder into the lock file. It fails at once, with a *LockedError, when
// another process (or another Lock in this one) holds it.
func Acquire(dir string, holder Holder) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, LockName)
	// Not O_TRUNC: the holder's record must survive a refused open.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, &LockedError{Path: path, Holder: readHolder(path)}
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	b, err := json.Marshal(holder)
	if err == nil {
		if err = f.Truncate(0); err == nil {
			_, err = f.WriteAt(append(b, '\n'), 0)
		}
	}
	if err != nil {
		unlockFile(f)
		f.Close()
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// readHolder reads a lock file's holder; a zero Holder if it cannot.
func readHolder(path string) Holder {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal([]byte(strings.TrimSpace(string(b))), &h) != nil {
		return Holder{}
	}
	return h
}

// Release unlocks the data dir. It is safe on a nil Lock and idempotent.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := errors.Join(unlockFile(l.f), l.f.Close())
	l.f = nil
	return err
}

// Self is the Holder record of this process, started at started.
func Self(started time.Time) Holder {
	host, err := os.Hostname()
	if err != nil {
		host = "(unknown)"
	}
	return Holder{PID: os.Getpid(), Host: host, Started: started}
}
