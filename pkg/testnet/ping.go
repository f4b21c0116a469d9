package testnet

import (
	"net"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Ping6 sends one ICMPv6 echo request from ns to dst (an address, with
// "%zone" for a link-local one) and reports whether the matching reply
// came back within timeout.
func Ping6(ns *NS, dst string, timeout time.Duration) bool {
	ok := false
	_ = ns.Do(func() error {
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer c.Close()
		id, seq := os.Getpid()&0xffff, int(time.Now().UnixNano()&0x7fff)
		msg := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("tapfw")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		addr, err := net.ResolveIPAddr("ip6", dst)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, addr); err != nil {
			return err
		}
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 1500)
		for {
			if err := c.SetReadDeadline(deadline); err != nil {
				return err
			}
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			m, err := icmp.ParseMessage(58, buf[:n])
			if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
				continue
			}
			if e, isEcho := m.Body.(*icmp.Echo); isEcho && e.ID == id && e.Seq == seq {
				ok = true
				return nil
			}
		}
	})
	return ok
}
