package netfilter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrBusy means the host-wide lock (or the xtables lock) could not be had
// in time: nothing was changed, and the caller may try again later.
var ErrBusy = errors.New("firewall is busy")

// DefaultLockPath is the host-wide lock every tapfw process takes.
const DefaultLockPath = "/run/tapfw.lock"

// FileLock is a host-wide exclusive lock on a file (flock). The kernel
// drops it when the holder dies, so a killed plugin never leaves it held.
type FileLock struct {
	Path    string
	Timeout time.Duration
}

// Lock waits for the lock up to Timeout and returns the function that
// releases it. It returns an error wrapping ErrBusy on timeout.
func (l FileLock) Lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o755); err != nil {
		return nil, fmt.Errorf("making the lock's directory: %w", err)
	}
	f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", l.Path, err)
	}
	deadline := time.Now().Add(l.Timeout)
	for wait := time.Millisecond; ; wait = min(wait*2, 50*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", l.Path, err)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("%w: lock %s held by another tapfw for over %s", ErrBusy, l.Path, l.Timeout)
		}
		time.Sleep(wait)
	}
}
