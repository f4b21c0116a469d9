package testnet

import (
	"errors"
	"fmt"
	"time"

	"github.com/tapfw/tapfw/pkg/nflog"
)

// NFLog receives the log lines netfilter sends to one NFLOG group of a
// namespace (what ulogd would read) and keeps their prefixes and a summary
// of each packet's header.
type NFLog struct {
	conn *nflog.Conn
	rec  *recorder[Logged]
}

// Logged is one packet logged to the group.
type Logged struct {
	Prefix string
	// Packet summarises the network header (see nflog.Summary).
	Packet string
}

func (l Logged) String() string { return fmt.Sprintf("%q %s", l.Prefix, l.Packet) }

// NFLogListen binds group in ns and collects the prefixes of what is
// logged to it until Close.
func NFLogListen(ns *NS, group uint16) (*NFLog, error) {
	var conn *nflog.Conn
	err := ns.Do(func() (err error) {
		conn, err = nflog.Listen(group)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", ns.Name, err)
	}
	l := &NFLog{conn: conn, rec: newRecorder[Logged]()}
	// The socket is the namespace's: reading it needs no namespace.
	l.rec.run(func() []Logged {
		// An error (ENOBUFS: the kernel dropped lines) only loses
		// lines, which Wait reports as missing.
		entries, _ := conn.Receive(100 * time.Millisecond)
		var out []Logged
		for _, e := range entries {
			out = append(out, Logged{Prefix: e.Prefix, Packet: e.Packet})
		}
		return out
	})
	return l, nil
}

// Packets returns what was logged so far.
func (l *NFLog) Packets() []Logged { return l.rec.all() }

// Prefixes returns the prefixes logged so far.
func (l *NFLog) Prefixes() []string {
	var out []string
	for _, p := range l.Packets() {
		out = append(out, p.Prefix)
	}
	return out
}

// Wait reports whether a line with prefix arrives within timeout.
func (l *NFLog) Wait(prefix string, timeout time.Duration) bool {
	return l.rec.wait(func(p Logged) bool { return p.Prefix == prefix }, timeout)
}

// Close stops listening; call it once.
func (l *NFLog) Close() error {
	return errors.Join(l.rec.close(), l.conn.Close())
}
