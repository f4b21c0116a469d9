package soak

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Traffic is what runs between the two VMs during the soak: the allowed
// flows (a TCP stream of numbered records, acknowledged record by record,
// and a stream of numbered UDP datagrams) and the probes to the server's
// closed ports (TCP connects and UDP datagrams to listeners that count
// what arrives). Sockets are made on a thread inside the VM's namespace
// (NS.Do); the goroutines that use them may run anywhere.
type Traffic struct {
	o     *Options
	cycle *atomic.Int64 // the soak's current cycle, to date the first failure
	stop  chan struct{}
	wg    sync.WaitGroup
	notes notes

	tcp      *tcpFlow
	udp      *udpStream
	probeUDP *udpStream
	tcpProbe struct {
		srv            io.Closer
		tried, passed  atomic.Uint64
		firstPassCycle atomic.Int64
	}
}

// notes are the failures the traffic saw, in words, with the cycle.
type notes struct {
	mu   sync.Mutex
	list []string
}

func (n *notes) add(cycle int64, format string, a ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.list) < 10 {
		n.list = append(n.list, fmt.Sprintf("cycle %d: ", cycle)+fmt.Sprintf(format, a...))
	}
}

func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.list...)
}

// StartTraffic connects the flows and starts them and the probes.
func StartTraffic(o *Options, client, server *testnet.NS, cycle *atomic.Int64) (*Traffic, error) {
	t := &Traffic{o: o, cycle: cycle, stop: make(chan struct{})}
	t.tcpProbe.firstPassCycle.Store(-1)
	var err error
	if t.tcp, err = newTCPFlow(t, client, server); err != nil {
		t.abort()
		return nil, err
	}
	if t.udp, err = newUDPStream(t, "udp flow", client, server, UDPFlowPort, o.UDPRate); err != nil {
		t.abort()
		return nil, err
	}
	if t.probeUDP, err = newUDPStream(t, "udp probe", client, server, UDPProbePort, 50); err != nil {
		t.abort()
		return nil, err
	}
	addr := net.JoinHostPort(ServerIP, strconv.Itoa(ProbePort))
	if t.tcpProbe.srv, err = testnet.TCPServe(server, addr); err != nil {
		t.abort()
		return nil, err
	}
	t.wg.Add(1)
	go t.probeTCP(client, addr)
	return t, nil
}

// probeTCP tries to connect to the closed port until Stop; a connect
// that completes is a pass.
func (t *Traffic) probeTCP(client *testnet.NS, addr string) {
	defer t.wg.Done()
	for {
		select {
		case <-t.stop:
			return
		default:
		}
		ok := testnet.TCPProbe(client, addr, 200*time.Millisecond)
		t.tcpProbe.tried.Add(1)
		if ok {
			t.tcpProbe.passed.Add(1)
			t.tcpProbe.firstPassCycle.CompareAndSwap(-1, t.cycle.Load())
		}
	}
}

func (t *Traffic) abort() {
	close(t.stop)
	for _, c := range []io.Closer{t.tcp, t.udp, t.probeUDP, t.tcpProbe.srv} {
		if c != nil && !isNilCloser(c) {
			_ = c.Close()
		}
	}
	t.wg.Wait()
}

func isNilCloser(c io.Closer) bool {
	switch v := c.(type) {
	case *tcpFlow:
		return v == nil
	case *udpStream:
		return v == nil
	}
	return false
}

// Stop ends the traffic: the senders stop, the TCP flow is closed after
// every record is acknowledged, the receivers drain, and the result is
// what each side counted.
func (t *Traffic) Stop() TrafficResult {
	close(t.stop)
	t.wg.Wait()
	var r TrafficResult
	t.tcp.finish(&r)
	r.UDPSent, r.UDPRecv, r.UDPLost, r.UDPLate = t.udp.finish()
	r.UDPGaps = t.udp.check.Gaps
	r.ProbeUDPSent, r.ProbeUDPPassed, _, _ = t.probeUDP.finish()
	_ = t.tcpProbe.srv.Close()
	r.ProbeTCPTried, r.ProbeTCPPassed = t.tcpProbe.tried.Load(), t.tcpProbe.passed.Load()
	if r.ProbeTCPPassed > 0 {
		t.notes.add(t.tcpProbe.firstPassCycle.Load(), "a TCP connect to the closed port %d passed (the first)", ProbePort)
	}
	r.Notes = t.notes.all()
	return r
}

// TrafficResult is what the flows and probes counted.
type TrafficResult struct {
	TCPSent, TCPRecv, TCPLost, TCPOutOfOrder uint64 // records
	TCPBytesSent, TCPBytesRecv               uint64
	TCPSegsOut, TCPSegsIn                    uint32 // the client's data segments, sent and received by the server (TCP_INFO)
	TCPSegsLost                              uint32 // data segments sent and not received, both ways
	TCPRetrans                               uint32 // segments retransmitted by either end after the handshake: lost, or acknowledged late
	TCPSetupRetrans                          uint32 // retransmitted during the handshake
	TCPLongest                               time.Duration
	TCPBroken                                int // connection errors: resets, broken pipes, ...
	UDPSent, UDPRecv, UDPLost, UDPLate       uint64
	UDPGaps                                  uint64 // times a datagram came after a missing one
	ProbeTCPTried, ProbeTCPPassed            uint64
	ProbeUDPSent, ProbeUDPPassed             uint64
	Notes                                    []string
}

// udpStream sends numbered datagrams from the client to port on the
// server at rate a second, and counts what arrives.
type udpStream struct {
	t          *Traffic
	what       string
	send, recv *net.UDPConn
	sent       atomic.Uint64
	check      SeqCheck // the receiver's; read after it ended
	firstGap   int64
	recvDone   chan struct{}
	closeOnce  sync.Once
}

func newUDPStream(t *Traffic, what string, client, server *testnet.NS, port, rate int) (*udpStream, error) {
	u := &udpStream{t: t, what: what, recvDone: make(chan struct{}), firstGap: -1}
	laddr := &net.UDPAddr{IP: net.ParseIP(ServerIP), Port: port}
	if err := server.Do(func() (err error) { u.recv, err = net.ListenUDP("udp4", laddr); return err }); err != nil {
		return nil, fmt.Errorf("%s: listen: %w", what, err)
	}
	if err := client.Do(func() (err error) { u.send, err = net.DialUDP("udp4", nil, laddr); return err }); err != nil {
		_ = u.recv.Close()
		return nil, fmt.Errorf("%s: socket: %w", what, err)
	}
	_ = u.recv.SetReadBuffer(4 << 20)
	go u.receive()
	t.wg.Add(1)
	go u.sendLoop(rate)
	return u, nil
}

func (u *udpStream) receive() {
	defer close(u.recvDone)
	buf := make([]byte, 2048)
	for {
		n, err := u.recv.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < 8 {
			continue
		}
		gaps := u.check.Gaps
		u.check.See(binary.BigEndian.Uint64(buf))
		if gaps == 0 && u.check.Gaps > 0 {
			u.firstGap = u.t.cycle.Load()
		}
	}
}

// sendLoop sends rate datagrams a second, in batches every 10 ms.
func (u *udpStream) sendLoop(rate int) {
	defer u.t.wg.Done()
	pace(u.t.stop, rate, func() bool {
		var b [64]byte
		seq := u.sent.Load()
		binary.BigEndian.PutUint64(b[:], seq)
		if _, err := u.send.Write(b[:]); err != nil {
			u.t.notes.add(u.t.cycle.Load(), "%s: send: %v", u.what, err)
			return false
		}
		u.sent.Add(1)
		return true
	})
}

// pace calls send rate times a second until stop is closed or send
// returns false.
func pace(stop <-chan struct{}, rate int, send func() bool) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start, done := time.Now(), 0
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			due := int(now.Sub(start).Seconds() * float64(rate))
			for ; done < due; done++ {
				if !send() {
					return
				}
			}
		}
	}
}

// finish waits for the last datagrams and closes the sockets: sent,
// received, lost, and arrived late.
func (u *udpStream) finish() (sent, recv, lost, late uint64) {
	time.Sleep(300 * time.Millisecond)
	_ = u.Close()
	sent = u.sent.Load()
	if u.check.Gaps > 0 {
		u.t.notes.add(u.firstGap, "%s: the first gap in the datagrams' numbers", u.what)
	}
	return sent, u.check.Received, u.check.Lost(sent), u.check.Late
}

func (u *udpStream) Close() error {
	u.closeOnce.Do(func() {
		_ = u.send.Close()
		_ = u.recv.Close()
		<-u.recvDone
	})
	return nil
}

// tcpInfo reads TCP_INFO of c.
func tcpInfo(c *net.TCPConn) (*unix.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return nil, err
	}
	return info, serr
}
