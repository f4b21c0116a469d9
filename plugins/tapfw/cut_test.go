package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// echoServe listens on addr in ns and echoes what each connection sends,
// until the test ends; then it closes every connection itself (a cut
// one would not see its client's close).
func echoServe(t *testing.T, ns *testnet.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// session is a live TCP connection whose data flows both ways: each round
// trip sends a chunk and reads its echo.
type session struct {
	name string
	c    net.Conn
	n    int
}

// openSession connects from ns to addr and makes one round trip.
func openSession(t *testing.T, name string, ns *testnet.NS, addr string) *session {
	t.Helper()
	s := &session{name: name}
	if err := ns.Do(func() error {
		var err error
		s.c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.c.Close() })
	if err := s.roundTrip(2 * time.Second); err != nil {
		t.Fatalf("%s: first round trip: %v", name, err)
	}
	return s
}

// roundTrip sends 512 bytes and reads them back within timeout.
func (s *session) roundTrip(timeout time.Duration) error {
	s.n++
	msg := bytes.Repeat([]byte{byte(s.n)}, 512)
	_ = s.c.SetDeadline(time.Now().Add(timeout))
	if _, err := s.c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s.c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs")
	}
	return nil
}

// flows checks each session's next round trip: open ones flow, cut ones
// do not (their next packet is dropped).
func flows(t *testing.T, step string, open, cut []*session) {
	t.Helper()
	for _, s := range open {
		for range 3 {
			if err := s.roundTrip(2 * time.Second); err != nil {
				t.Errorf("%s: %s stopped: %v", step, s.name, err)
				break
			}
		}
	}
	for _, s := range cut {
		if err := s.roundTrip(time.Second); err == nil {
			t.Errorf("%s: %s still flows", step, s.name)
		}
	}
}

func TestCutConnections(t *testing.T) { forEachBackend(t, testCutConnections) }

// testCutConnections: live sessions into a guest and out of it, each
// allowed by a rule of its own. An ADD that takes a rule away cuts the
// session that rule allowed, in either direction and family, at its next
// packet, while the sessions still allowed flow on; keepEstablished keeps
// them all; a new connection meets the new rules either way.
func testCutConnections(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	for _, p := range []string{"5001", "5002", "5004"} {
		echoServe(t, a.ns, "[::]:"+p)
	}
	echoServe(t, b.ns, "[::]:5003")
	conf := func(keep bool, in, out string) testnet.Call {
		return testnet.Call{Command: "ADD", ContainerID: "vm-" + a.port, IfName: a.port,
			Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cut","type":"tapfw","bridge":"vmbr0","mac":%q,
			"ips":[%q,%q],"policyIn":"DROP","policyOut":"DROP","keepEstablished":%v,"rules":{"in":[%s],"out":[%s]}}`,
				a.mac, a.ip4, a.ip6, keep, in, out))}
	}
	const (
		in5001 = `{"action":"ACCEPT","proto":"tcp","dport":"5001"}`
		in5002 = `{"action":"ACCEPT","proto":"tcp","dport":"5002"}`
		in5004 = `{"action":"ACCEPT","proto":"tcp","dport":"5004","source":"192.0.2.0/24"}`
		out503 = `{"action":"ACCEPT","proto":"tcp","dport":"5003"}`
	)
	h.mustCall(conf(false, in5001+","+in5002+","+in5004, out503))
	h.mustCall(b.groupConf("ADD", `[]`, `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"5003"}]}`))
	at := func(ip net.IP, port string) string { return net.JoinHostPort(ip.String(), port) }
	in1 := openSession(t, "b to a:5001 (IPv4)", b.ns, at(a.ip4, "5001"))
	in1v6 := openSession(t, "b to a:5001 (IPv6)", b.ns, at(a.ip6, "5001"))
	in2 := openSession(t, "b to a:5002", b.ns, at(a.ip4, "5002"))
	in4 := openSession(t, "b to a:5004", b.ns, at(a.ip4, "5004"))
	out3 := openSession(t, "a to b:5003", a.ns, at(b.ip4, "5003"))

	// The same rules again: nothing is cut.
	h.mustCall(conf(false, in5001+","+in5002+","+in5004, out503))
	flows(t, "the same rules", []*session{in1, in1v6, in2, in4, out3}, nil)

	// 5001 and the way out go; 5004 stays open to IPv4 only.
	h.mustCall(conf(false, in5002+","+in5004, ""))
	flows(t, "rules removed", []*session{in2, in4}, []*session{in1, in1v6, out3})
	if testnet.TCPProbe(b.ns, at(a.ip4, "5001"), 700*time.Millisecond) {
		t.Error("a new connection to 5001 passes without its rule")
	}

	// keepEstablished: the rules come back, sessions open, the rules go
	// again, and every session flows on.
	h.mustCall(conf(true, in5001+","+in5002+","+in5004, out503))
	kin1 := openSession(t, "b to a:5001, kept", b.ns, at(a.ip4, "5001"))
	kout3 := openSession(t, "a to b:5003, kept", a.ns, at(b.ip4, "5003"))
	h.mustCall(conf(true, in5002, ""))
	flows(t, "keepEstablished", []*session{kin1, kout3, in2, in4}, nil)
	if testnet.TCPProbe(b.ns, at(a.ip4, "5001"), 700*time.Millisecond) {
		t.Error("keepEstablished: a new connection to 5001 passes without its rule")
	}
}

// The flows of many taps are judged against the taps that hold one of
// their ends only: found by address, or by a routed network.
func TestFlowCandidates(t *testing.T) {
	f := &flowJudge{}
	for i, own := range [][]string{{"192.0.2.10/32", "2001:db8::10/128"}, {"192.0.2.11/32"}, {"198.51.100.0/24"}} {
		ot := ownedTap{tap: inspect.Tap{Name: fmt.Sprintf("tap%d", i)}}
		for _, p := range own {
			ot.own = append(ot.own, netip.MustParsePrefix(p))
		}
		f.add(ot)
	}
	flow := func(src, dst string) *netlink.ConntrackFlow {
		fl := &netlink.ConntrackFlow{}
		fl.Forward.SrcIP, fl.Forward.DstIP = net.ParseIP(src), net.ParseIP(dst)
		return fl
	}
	for _, c := range []struct {
		src, dst string
		want     []int
	}{
		{"192.0.2.11", "192.0.2.10", []int{0, 1, 2}},
		{"203.0.113.5", "192.0.2.11", []int{1, 2}},
		{"2001:db8::10", "2001:db8::99", []int{0, 2}},
		{"203.0.113.5", "203.0.113.6", []int{2}},
	} {
		if got := f.candidates(flow(c.src, c.dst)); !slices.Equal(got, c.want) {
			t.Errorf("%s -> %s: candidates %v, want %v", c.src, c.dst, got, c.want)
		}
	}
}
