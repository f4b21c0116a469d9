package testnet

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/tapfw/tapfw/pkg/nflog"
	"golang.org/x/sys/unix"
)

// Capture records the frames an interface of a namespace sees, both ways,
// as one-line summaries: an IP packet's (see nflog.Summary), else "ether 0xTYPE
// SRC > DST": a tcpdump for tests.
type Capture struct{ rec *recorder[string] }

// CaptureOn starts recording what ifname in ns sends and receives.
func CaptureOn(ns *NS, ifname string) (*Capture, error) {
	c := &Capture{rec: newRecorder[string]()}
	err := ns.Do(func() error {
		fd, _, err := packetSocket(ifname, unix.ETH_P_ALL)
		c.rec.fd = fd
		return err
	})
	if err == nil {
		err = c.rec.start(func(b []byte) []string {
			if len(b) < 14 {
				return nil
			}
			switch typ := binary.BigEndian.Uint16(b[12:14]); typ {
			case unix.ETH_P_IP, unix.ETH_P_IPV6:
				return []string{nflog.Summary(b[14:])}
			default:
				return []string{fmt.Sprintf("ether 0x%04x %s > %s", typ, net.HardwareAddr(b[6:12]), net.HardwareAddr(b[0:6]))}
			}
		})
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns.Name, err)
	}
	return c, nil
}

// Packets returns the summaries recorded so far.
func (c *Capture) Packets() []string { return c.rec.all() }

// Wait reports whether a packet whose summary starts with prefix is seen
// within timeout.
func (c *Capture) Wait(prefix string, timeout time.Duration) bool {
	return c.rec.wait(func(p string) bool { return strings.HasPrefix(p, prefix) }, timeout)
}

// Close stops recording; call it once.
func (c *Capture) Close() error { return c.rec.close() }

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
