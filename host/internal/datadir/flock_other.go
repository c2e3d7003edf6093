//go:build !unix

package datadir

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// lockFile does not lock where flock(2) does not exist: the lock file
// still records the holder, but nothing stops a second process.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
