package console

import (
	"sync"
	"time"

	"github.com/tapfw/tapfw/pkg/inspect"
)

// Reading every tap costs about 0.1 ms a tap (0.4 s at 4000): the taps
// page, its refreshes, the API and the chart's sampler share one read
// while it is fresh, so that more viewers do not mean more reads, and
// the page refreshes less often where the read is slow.

// tapsFresh is how long a read of the taps serves every request.
const tapsFresh = time.Second

// tapsRead is the latest read of the taps and what it cost.
type tapsRead struct {
	mu   sync.Mutex
	at   time.Time
	took time.Duration
	taps []inspect.Tap
}

// readTaps is the installed taps, read again when the last read is
// older than tapsFresh.
func (s *Server) readTaps() ([]inspect.Tap, error) {
	s.taps.mu.Lock()
	defer s.taps.mu.Unlock()
	if !s.taps.at.IsZero() && time.Since(s.taps.at) < tapsFresh {
		return s.taps.taps, nil
	}
	start := time.Now()
	var taps []inspect.Tap
	if err := s.call(func() (err error) { taps, err = s.host.Taps(); return err }); err != nil {
		return nil, err
	}
	s.taps.at, s.taps.took, s.taps.taps = time.Now(), time.Since(start), taps
	return taps, nil
}

// refreshEvery is how often a page refreshes the taps: every 2 s, or
// ten times what a read takes, so that an open page keeps a core busy
// a tenth of the time at most.
func (s *Server) refreshEvery() time.Duration {
	s.taps.mu.Lock()
	defer s.taps.mu.Unlock()
	return max(2*time.Second, 10*s.taps.took)
}

// edited forgets the read after a change, so the next page shows it.
func (s *Server) edited() {
	s.taps.mu.Lock()
	defer s.taps.mu.Unlock()
	s.taps.at = time.Time{}
}
