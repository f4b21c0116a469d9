// Package nflog reads the packets netfilter logs to an NFLOG group (what
// ulogd reads), over nfnetlink_log.
package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one packet logged to a group.
type Entry struct {
	Time   time.Time // when it was received (or NFULA_TIMESTAMP if present)
	Prefix string
	// Packet summarises the packet's network header (see Summary), e.g.
	// "ipv4 192.0.2.1 > 192.0.2.2 proto 6 ttl 64"; "" without a payload.
	Packet string
	// Interface indexes (NFULA_IFINDEX_*), 0 when absent.
	InDev, OutDev, PhysInDev, PhysOutDev uint32
}

// Conn is a netlink socket bound to one NFLOG group. Receive is for one
// goroutine at a time; Close may be called from any goroutine.
type Conn struct {
	f       *os.File
	raw     syscall.RawConn
	closed  atomic.Bool
	group   uint16
	seq     uint32
	buf     []byte
	pending []Entry // logged while Listen waited for an acknowledgement
}

const (
	// copyRange is enough for an IPv6 header and the first bytes after it.
	copyRange = 64
	// ackTimeout bounds the wait for the kernel to acknowledge a request.
	ackTimeout = 5 * time.Second
)

// Listen binds group in the network namespace of the calling OS thread
// (the caller locks/enters it) and sets copy-packet mode with a 64-byte
// copy range, so that each Entry has its header summary. Once bound, the
// Conn needs no particular thread. The kernel's defaults for the group
// stay: it sends what was logged in batches, at the latest after a
// second. A group has one listener: if another
// socket holds it (ulogd), Listen fails and changes nothing. It needs
// CAP_NET_ADMIN in the namespace.
func Listen(group uint16) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nflog socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("nflog socket bind: %w", err)
	}
	// A non-blocking descriptor goes to the runtime's poller, which gives
	// Receive its deadline and lets Close interrupt it.
	c := &Conn{f: os.NewFile(uintptr(fd), "nflog"), group: group, buf: make([]byte, 1<<16)}
	if c.raw, err = c.f.SyscallConn(); err == nil {
		err = c.bind()
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// bind binds the group and sets its copy mode.
func (c *Conn) bind() error {
	err := c.request(nfulnlMsgConfig, attr(nfulaCfgCmd, []byte{nfulnlCfgCmdBind}))
	// The kernel refuses a group bound by another socket with EPERM (EBUSY
	// is for the same socket binding twice), as it refuses a caller
	// without CAP_NET_ADMIN: capable tells the two apart.
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EPERM) && c.capable() {
		return fmt.Errorf("nflog group %d is bound by another listener (ulogd?): %w", c.group, err)
	}
	if err != nil {
		return fmt.Errorf("nflog bind group %d: %w", c.group, err)
	}
	mode := attr(nfulaCfgMode, []byte{0, 0, 0, copyRange, nfulnlCopyPacket, 0}) // __be32 range, u8 mode, pad
	if err := c.request(nfulnlMsgConfig, mode); err != nil {
		return fmt.Errorf("nflog copy mode of group %d: %w", c.group, err)
	}
	return nil
}

// capable says whether the kernel lets this socket configure nfnetlink_log
// at all: it checks CAP_NET_ADMIN before it reads a message, so a message
// of an unknown type is refused with EPERM without it and EINVAL with it.
// It changes nothing.
func (c *Conn) capable() bool {
	return !errors.Is(c.request(nfulnlMsgMax), unix.EPERM)
}

// Receive waits at most timeout for one read and returns its entries (nil,
// nil on timeout; a read may also hold no entry). An error wrapping
// unix.ENOBUFS means the kernel dropped entries and the Conn stays usable;
// after Close the error wraps os.ErrClosed.
func (c *Conn) Receive(timeout time.Duration) ([]Entry, error) {
	if p := c.pending; p != nil {
		c.pending = nil
		return p, nil
	}
	b, err := c.read(time.Now().Add(timeout))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nflog receive from group %d: %w", c.group, err)
	}
	return entries(b, time.Now()), nil
}

// Close closes the socket, which unbinds the group; a second call returns
// an error.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.f.Close()
}

// request sends one message of type typ to nfnetlink_log for the group with
// attributes attrs and returns the kernel's answer: nil or its errno.
// Entries read meanwhile are kept for Receive.
func (c *Conn) request(typ uint16, attrs ...[]byte) error {
	c.seq++
	msg := make([]byte, 20, 64)
	msg[16] = unix.AF_UNSPEC // nfgenmsg: family, version 0, group
	binary.BigEndian.PutUint16(msg[18:], c.group)
	for _, a := range attrs {
		msg = append(msg, a...)
	}
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysULog<<8|typ)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	var serr error
	err := c.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for deadline := time.Now().Add(ackTimeout); ; {
		b, err := c.read(deadline)
		if err != nil {
			return fmt.Errorf("wait for acknowledgement: %w", err)
		}
		if ok, errno := ack(b, c.seq); ok {
			return errno
		}
		c.pending = append(c.pending, entries(b, time.Now())...)
	}
}

// read waits until deadline for one datagram; the result is valid until
// the next read.
func (c *Conn) read(deadline time.Time) ([]byte, error) {
	if err := c.f.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), c.buf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil && c.closed.Load() {
		return nil, os.ErrClosed // what the poller says is not
	}
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return c.buf[:n], nil
}
