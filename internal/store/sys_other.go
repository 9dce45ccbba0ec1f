//go:build !linux

package store

import (
	"errors"
	"io/fs"
	"math"
)

// freeBytes is not implemented outside Linux (the hub runs on Linux); it
// reports unlimited space, which disables the ErrDiskFull check.
func freeBytes(string) (uint64, error) { return math.MaxUint64, nil }

// allocatedBytes returns the length of the file.
func allocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }

// dirLock is not implemented outside Linux: badger takes its own lock.
type dirLock struct{}

var errLockHeld = errors.New("lock held")

// lockDir returns nil: badger locks the directory itself.
func lockDir(string) (*dirLock, error) { return nil, nil }

func (*dirLock) release() error { return nil }
