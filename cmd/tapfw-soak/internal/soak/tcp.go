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

	"github.com/tapfw/tapfw/pkg/testnet"
)

// recordLen is the size of one TCP record: its number, then filler bytes
// that are the number's low byte (the receiver checks them too).
const recordLen = 512

// tcpFlow is the allowed long-lived connection from the client VM to the
// server VM's open port. The client writes numbered records at a steady
// rate; the server checks that they come complete and in order and
// acknowledges each by its number; the client's AckClock measures how long
// each record waited. Any error on either side (a reset, a broken pipe, an
// early EOF) breaks the flow and is a failure.
type tcpFlow struct {
	t           *Traffic
	ln          net.Listener
	conn, peer  *net.TCPConn // client's and server's end
	clock       *AckClock
	check       SeqCheck // the server's; read after serverDone
	bytesSent   atomic.Uint64
	bytesRecv   atomic.Uint64
	broken      atomic.Int64
	stopping    atomic.Bool
	serverDone  chan struct{}
	ackDone     chan struct{}
	closeOnce   sync.Once
	sendStopped chan struct{}
	// setupRetrans are the retransmissions of the handshake (SYN, SYN-ACK),
	// before the soak's first record: not the soak's.
	setupRetrans uint32
}

func newTCPFlow(t *Traffic, client, server *testnet.NS) (*tcpFlow, error) {
	f := &tcpFlow{t: t, clock: NewAckClock(1 << 16), serverDone: make(chan struct{}), ackDone: make(chan struct{}), sendStopped: make(chan struct{})}
	addr := net.JoinHostPort(ServerIP, strconv.Itoa(FlowPort))
	if err := server.Do(func() (err error) { f.ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		return nil, fmt.Errorf("tcp flow: listen: %w", err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := f.ln.Accept()
		if err == nil {
			f.peer = c.(*net.TCPConn)
		}
		accepted <- err
	}()
	var c net.Conn
	err := client.Do(func() (err error) { c, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err })
	if err == nil {
		err = <-accepted
	}
	if err != nil {
		_ = f.ln.Close()
		if c != nil {
			_ = c.Close()
		}
		return nil, fmt.Errorf("tcp flow: connect: %w", err)
	}
	f.conn = c.(*net.TCPConn)
	for _, c := range []*net.TCPConn{f.conn, f.peer} {
		if ci, err := tcpInfo(c); err == nil {
			f.setupRetrans += ci.Total_retrans
		}
	}
	go f.serve()
	go f.readAcks()
	t.wg.Add(1)
	go f.sendLoop(t.o.TCPRate)
	return f, nil
}

func (f *tcpFlow) fail(format string, a ...any) {
	if f.broken.Add(1) == 1 {
		f.t.notes.add(f.t.cycle.Load(), "tcp flow broken: "+format, a...)
	}
}

// serve is the server: read records, check them, acknowledge each.
func (f *tcpFlow) serve() {
	defer close(f.serverDone)
	buf := make([]byte, recordLen)
	var ack [8]byte
	for {
		if _, err := io.ReadFull(f.peer, buf); err != nil {
			if !errors.Is(err, io.EOF) || !f.stopping.Load() {
				f.fail("server: read: %v", err)
			}
			return
		}
		f.bytesRecv.Add(recordLen)
		seq := binary.BigEndian.Uint64(buf)
		if buf[8] != byte(seq) || buf[recordLen-1] != byte(seq) {
			f.fail("server: record %d corrupted", seq)
		}
		before := f.check.Gaps + f.check.Late
		f.check.See(seq)
		if f.check.Gaps+f.check.Late != before {
			f.fail("server: record %d out of order (expected %d)", seq, f.check.Next)
		}
		binary.BigEndian.PutUint64(ack[:], seq)
		if _, err := f.peer.Write(ack[:]); err != nil {
			f.fail("server: write: %v", err)
			return
		}
	}
}

// readAcks is the client's receiving side.
func (f *tcpFlow) readAcks() {
	defer close(f.ackDone)
	var ack [8]byte
	for {
		if _, err := io.ReadFull(f.conn, ack[:]); err != nil {
			// Once stopping, the server's EOF (or this side's own close) ends it.
			if !f.stopping.Load() || !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				f.fail("client: read: %v", err)
			}
			return
		}
		f.clock.Acked(binary.BigEndian.Uint64(ack[:]), time.Now())
	}
}

// sendLoop writes rate records a second and watches the oldest
// unacknowledged one's wait.
func (f *tcpFlow) sendLoop(rate int) {
	defer f.t.wg.Done()
	defer close(f.sendStopped)
	buf := make([]byte, recordLen)
	seq := uint64(0)
	pace(f.t.stop, rate, func() bool {
		f.clock.Check(time.Now())
		binary.BigEndian.PutUint64(buf, seq)
		for i := 8; i < recordLen; i++ {
			buf[i] = byte(seq)
		}
		f.clock.Sent(time.Now())
		if _, err := f.conn.Write(buf); err != nil {
			f.fail("client: write: %v", err)
			return false
		}
		f.bytesSent.Add(recordLen)
		seq++
		return true
	})
}

// finish waits (up to 5 s) for every record's acknowledgement, reads the
// TCP counters, closes the connection in order and fills r.
func (f *tcpFlow) finish(r *TrafficResult) {
	<-f.sendStopped
	deadline := time.Now().Add(5 * time.Second)
	for {
		sent, acked, _, _ := f.clock.State()
		if acked >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.clock.Check(time.Now())
	f.segments(r)
	f.stopping.Store(true)
	_ = f.conn.CloseWrite()
	select {
	case <-f.serverDone:
	case <-time.After(5 * time.Second):
		f.fail("server: no EOF 5 s after the client closed")
	}
	_ = f.Close()
	sent, acked, longest, over := f.clock.State()
	if over {
		longest = time.Duration(1<<63 - 1)
	}
	if acked < sent {
		f.fail("%d records never acknowledged", sent-acked)
	}
	r.TCPSent, r.TCPRecv, r.TCPLost = sent, f.check.Received, f.check.Lost(sent)
	r.TCPOutOfOrder = f.check.Gaps + f.check.Late
	r.TCPBytesSent, r.TCPBytesRecv = f.bytesSent.Load(), f.bytesRecv.Load()
	r.TCPLongest, r.TCPBroken = longest, int(f.broken.Load())
}

func (f *tcpFlow) Close() error {
	f.closeOnce.Do(func() {
		_ = f.ln.Close()
		_ = f.conn.Close()
		if f.peer != nil {
			_ = f.peer.Close()
		}
		<-f.serverDone
		<-f.ackDone
	})
	return nil
}

// segments fills r's segment counts from TCP_INFO of both ends, read once
// every record is acknowledged: a data segment one end sent (its
// retransmissions included) and the other never received (duplicates
// included) was lost on the way.
func (f *tcpFlow) segments(r *TrafficResult) {
	ci, err := tcpInfo(f.conn)
	if err != nil {
		f.fail("client: TCP_INFO: %v", err)
		return
	}
	si, err := tcpInfo(f.peer)
	if err != nil {
		f.fail("server: TCP_INFO: %v", err)
		return
	}
	r.TCPSegsOut, r.TCPSegsIn = ci.Data_segs_out, si.Data_segs_in
	r.TCPRetrans, r.TCPSetupRetrans = ci.Total_retrans+si.Total_retrans-f.setupRetrans, f.setupRetrans
	lost := int64(ci.Data_segs_out) - int64(si.Data_segs_in) + int64(si.Data_segs_out) - int64(ci.Data_segs_in)
	r.TCPSegsLost = uint32(max(0, lost))
}
