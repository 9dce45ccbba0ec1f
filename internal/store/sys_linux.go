package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// freeBytes returns the space available to unprivileged users on the file
// system holding dir.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// allocatedBytes returns the disk space allocated to a file, which for
// badger's preallocated sparse files is less than its length.
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// dirLock is an exclusive flock on the data directory, the same lock badger
// itself would take (so badger's tools see the directory as in use). The
// store takes it instead of badger so that it is held while checkDir reads
// the files, before badger opens them.
type dirLock struct {
	f       *os.File
	pidPath string
}

// errLockHeld means another open file description holds the lock.
var errLockHeld = errors.New("lock held")

// lockDir takes the lock and writes our pid into dir/LOCK, as badger does.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLockHeld
		}
		return nil, fmt.Errorf("flock: %w", err)
	}
	l := &dirLock{f: f, pidPath: filepath.Join(dir, lockFile)}
	if err := os.WriteFile(l.pidPath, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	return l, nil
}

// release removes the pid file and drops the lock.
func (l *dirLock) release() error {
	if l == nil {
		return nil
	}
	err := os.Remove(l.pidPath)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
