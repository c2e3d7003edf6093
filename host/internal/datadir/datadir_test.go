package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAcquire(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	started := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	first, err := Acquire(dir, Holder{PID: 4242, Host: "box", Started: started})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, Self(time.Now()))
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second Acquire: %v, want a *LockedError", err)
	}
	if want := (Holder{PID: 4242, Host: "box", Started: started}); locked.Holder != want {
		t.Errorf("holder = %+v, want %+v", locked.Holder, want)
	}
	for _, want := range []string{"pid 4242 on host box", "2026-12-07T09:00:00Z", filepath.Join(dir, LockName)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := first.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	again, err := Acquire(dir, Self(started))
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	defer again.Release()
	// The new holder's record replaced the old one entirely.
	if h := readHolder(filepath.Join(dir, LockName)); h.PID != os.Getpid() || h.Host == "box" {
		t.Errorf("lock file holder = %+v, want this process", h)
	}
}

// TestAcquireUnreadableHolder: a holder that has not written its record
// yet is still refused, with a message that says so.
func TestAcquireUnreadableHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := Acquire(dir, Self(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	if err := os.WriteFile(filepath.Join(dir, LockName), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, Self(time.Now()))
	if err == nil || !strings.Contains(err.Error(), "does not say which") {
		t.Fatalf("err = %v", err)
	}
}

func TestAcquireNotADir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(file, Self(time.Now())); err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("err = %v", err)
	}
}
