package soak

import (
	"sync"
	"time"
)

// SeqCheck is a receiver's continuity check of numbered records (TCP
// records or UDP datagrams, numbered from 0): every record must arrive
// once and in order.
type SeqCheck struct {
	Next     uint64 // the number expected next
	Received uint64
	Gaps     uint64 // times a record came after a missing one
	Missing  uint64 // records skipped and not seen late
	Late     uint64 // records that came after a later one (reordered or repeated)
}

// See records the arrival of record seq.
func (c *SeqCheck) See(seq uint64) {
	c.Received++
	switch {
	case seq == c.Next:
		c.Next++
	case seq > c.Next:
		c.Gaps++
		c.Missing += seq - c.Next
		c.Next = seq + 1
	default:
		c.Late++
		if c.Missing > 0 {
			c.Missing--
		}
	}
}

// Lost is how many of sent records never arrived: the missing ones in
// the middle and the ones after the last that did.
func (c *SeqCheck) Lost(sent uint64) uint64 {
	lost := c.Missing
	if sent > c.Next {
		lost += sent - c.Next
	}
	return lost
}

// AckClock is the sender's stall detector: each record's send time is
// kept until the receiver acknowledges it (acknowledgements come in
// order); the longest a record waited, acknowledged or still waiting
// when Check looks, is the flow's longest stall.
type AckClock struct {
	mu    sync.Mutex
	ring  []time.Time
	sent  uint64
	acked uint64
	max   time.Duration
	over  bool // more records waited than the ring holds
}

// NewAckClock keeps the send times of up to n unacknowledged records.
func NewAckClock(n int) *AckClock { return &AckClock{ring: make([]time.Time, n)} }

// Sent records that record number Sent() went out at t.
func (a *AckClock) Sent(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sent-a.acked >= uint64(len(a.ring)) {
		a.over = true
	}
	a.ring[a.sent%uint64(len(a.ring))] = t
	a.sent++
}

// Acked records at t that every record up to and including seq arrived.
func (a *AckClock) Acked(seq uint64, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.acked <= seq && a.acked < a.sent {
		a.note(t.Sub(a.ring[a.acked%uint64(len(a.ring))]))
		a.acked++
	}
}

// Check counts the wait of the oldest unacknowledged record up to t.
func (a *AckClock) Check(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acked < a.sent {
		a.note(t.Sub(a.ring[a.acked%uint64(len(a.ring))]))
	}
}

func (a *AckClock) note(d time.Duration) {
	if d > a.max {
		a.max = d
	}
}

// State is what was sent and acknowledged, and the longest wait so far
// (a ring overflow is a stall longer than anything it can measure).
func (a *AckClock) State() (sent, acked uint64, longest time.Duration, overflow bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent, a.acked, a.max, a.over
}
