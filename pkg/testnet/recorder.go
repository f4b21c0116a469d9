package testnet

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// recorder reads in the background until close and keeps what each read
// gives: what Capture and NFLog share.
type recorder[T any] struct {
	fd     int // the socket start reads and close closes, or -1
	mu     sync.Mutex
	got    []T
	done   chan struct{}
	reader sync.WaitGroup
}

func newRecorder[T any]() *recorder[T] { return &recorder[T]{fd: -1, done: make(chan struct{})} }

// start reads r.fd with a short receive timeout, so that close is noticed,
// and keeps what handle makes of each read.
func (r *recorder[T]) start(handle func([]byte) []T) error {
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	r.run(func() []T {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return nil
		}
		return handle(buf[:n])
	})
	return nil
}

// run calls next until close and keeps what it returns; next must return
// within a short while, so that close is noticed.
func (r *recorder[T]) run(next func() []T) {
	r.reader.Add(1)
	go func() {
		defer r.reader.Done()
		for {
			select {
			case <-r.done:
				return
			default:
			}
			if items := next(); len(items) > 0 {
				r.mu.Lock()
				r.got = append(r.got, items...)
				r.mu.Unlock()
			}
		}
	}()
}

// all returns what was kept so far.
func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.got...)
}

// wait reports whether something that ok accepts is kept within timeout.
func (r *recorder[T]) wait(ok func(T) bool, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		for _, v := range r.all() {
			if ok(v) {
				return true
			}
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// close stops reading and closes r.fd, if any; call it once.
func (r *recorder[T]) close() error {
	close(r.done)
	r.reader.Wait()
	if r.fd < 0 {
		return nil
	}
	return unix.Close(r.fd)
}
