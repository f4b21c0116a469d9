package testnet

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Capture records the IP packets an interface of a namespace sees, both
// ways, as one-line summaries (see summary): a tcpdump for tests.
type Capture struct {
	fd      int
	mu      sync.Mutex
	packets []string
	done    chan struct{}
	reader  sync.WaitGroup
}

// CaptureOn starts recording what ifname in ns sends and receives.
func CaptureOn(ns *NS, ifname string) (*Capture, error) {
	c := &Capture{fd: -1, done: make(chan struct{})}
	err := ns.Do(func() error {
		fd, _, err := packetSocket(ifname, unix.ETH_P_ALL)
		c.fd = fd
		return err
	})
	if err == nil {
		tv := unix.Timeval{Usec: 100000}
		err = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns.Name, err)
	}
	c.reader.Add(1)
	go c.read()
	return c, nil
}

func (c *Capture) read() {
	defer c.reader.Done()
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil || n < 14 {
			continue
		}
		switch binary.BigEndian.Uint16(buf[12:14]) {
		case unix.ETH_P_IP, unix.ETH_P_IPV6:
			s := summary(buf[14:n])
			c.mu.Lock()
			c.packets = append(c.packets, s)
			c.mu.Unlock()
		}
	}
}

// Packets returns the summaries recorded so far.
func (c *Capture) Packets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.packets...)
}

// Wait reports whether a packet whose summary starts with prefix is seen
// within timeout.
func (c *Capture) Wait(prefix string, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		for _, p := range c.Packets() {
			if strings.HasPrefix(p, prefix) {
				return true
			}
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// Close stops recording; call it once.
func (c *Capture) Close() error {
	close(c.done)
	if c.fd < 0 {
		return nil
	}
	c.reader.Wait()
	return unix.Close(c.fd)
}

// Join makes ns a member of group on ifname until the returned closer is
// closed; the kernel reports the membership (IGMP or MLD) as it would for
// any application.
func Join(ns *NS, ifname string, group net.IP) (io.Closer, error) {
	var conn *net.UDPConn
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		network := "udp6"
		if group.To4() != nil {
			network = "udp4"
		}
		conn, err = net.ListenMulticastUDP(network, ifi, &net.UDPAddr{IP: group})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("join %s on %s in %s: %w", group, ifname, ns.Name, err)
	}
	return conn, nil
}
