package testnet

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Spaces are the namespaces of one program run (tapfw-bench,
// tapfw-soak): Close deletes every one, also from a signal handler while
// the run is still making them, and after Close NewNS refuses.
type Spaces struct {
	mu     sync.Mutex
	spaces []*NS
	closed bool
}

// NewNS creates a namespace (see the package's NewNS) that Close deletes.
func (s *Spaces) NewNS(prefix string) (*NS, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("stopping")
	}
	n, err := NewNS(prefix)
	if err != nil {
		return nil, err
	}
	s.spaces = append(s.spaces, n)
	return n, nil
}

// Drop deletes namespaces before Close (nil ones are skipped) and
// returns the errors of the deletions.
func (s *Spaces) Drop(list ...*NS) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, n := range list {
		if n == nil {
			continue
		}
		errs = append(errs, n.Close())
		s.spaces = slices.DeleteFunc(s.spaces, func(x *NS) bool { return x == n })
	}
	return errors.Join(errs...)
}

// Close deletes every namespace, the newest first; later calls return nil.
func (s *Spaces) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for i := len(s.spaces) - 1; i >= 0; i-- {
		if err := s.spaces[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("removing namespace: %w", err))
		}
	}
	s.spaces = nil
	return errors.Join(errs...)
}
