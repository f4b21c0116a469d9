package netfilter

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestFileLockExcludesAndTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "tapfw.lock")
	l := FileLock{Path: path, Timeout: 100 * time.Millisecond}
	unlock, err := l.Lock()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.Lock(); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock while held: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %s, want about the timeout", d)
	}
	unlock()
	unlock2, err := l.Lock()
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}
