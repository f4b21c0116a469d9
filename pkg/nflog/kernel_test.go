package nflog_test

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/nflog"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// logNS is a fresh namespace with 192.0.2.1/24 on d0 (a veth whose peer
// is d1) and an
// nftables rule that logs its output to 192.0.2.9 with prefix to group 5.
func logNS(t *testing.T, prefix string) *testnet.NS {
	t.Helper()
	testnet.NeedKernel(t)
	ns, err := testnet.NewNS("nflog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, c := range [][]string{
		{"ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"ip", "addr", "add", "192.0.2.1/24", "dev", "d0"},
		{"ip", "link", "set", "d0", "up"},
		{"ip", "link", "set", "d1", "up"},
		{"nft", `add table inet t; add chain inet t out { type filter hook output priority 0; }; add rule inet t out ip daddr 192.0.2.9 log prefix "` + prefix + `" group 5`},
	} {
		if _, err := ns.Run(c...); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// listen binds group in ns.
func listen(ns *testnet.NS, group uint16) (c *nflog.Conn, err error) {
	err = ns.Do(func() error {
		c, err = nflog.Listen(group)
		return err
	})
	return c, err
}

// TestKernelReceive: a packet the namespace's rule logs arrives with its
// prefix, its header and the index of the link it leaves by.
func TestKernelReceive(t *testing.T) {
	ns := logNS(t, "tapfw-test")
	c, err := listen(ns, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var outDev int
	err = ns.Do(func() error {
		d0, err := net.InterfaceByName("d0")
		if err != nil {
			return err
		}
		outDev = d0.Index
		conn, err := net.Dial("udp4", "192.0.2.9:9")
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("logged"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []nflog.Entry
	for end := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(end); {
		// The Conn needs no namespace once bound: this runs on any thread.
		entries, err := c.Receive(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, entries...)
	}
	if len(got) != 1 {
		t.Fatalf("got %+v, want one entry", got)
	}
	e := got[0]
	if e.Prefix != "tapfw-test" || !strings.HasPrefix(e.Packet, "ipv4 192.0.2.1 > 192.0.2.9 proto 17 ") || e.OutDev != uint32(outDev) || e.InDev != 0 {
		t.Errorf("got %+v, want prefix tapfw-test, UDP 192.0.2.1 > 192.0.2.9, out of d0 (%d)", e, outDev)
	}
	if d := time.Since(e.Time); d < 0 || d > time.Minute {
		t.Errorf("entry time %v is not now", e.Time)
	}
}

// TestKernelGroupTaken: a second listener on a group is refused with a
// message that names the cause, and the first keeps the group.
func TestKernelGroupTaken(t *testing.T) {
	ns := logNS(t, "tapfw-taken")
	first, err := listen(ns, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := listen(ns, 5)
	var errno syscall.Errno
	if err == nil {
		second.Close()
		t.Fatal("a second Listen on group 5 succeeded")
	}
	if !strings.HasPrefix(err.Error(), "nflog group 5 is bound by another listener (ulogd?): ") || !errors.As(err, &errno) {
		t.Errorf("second Listen: %v, want the group named as taken, wrapping the errno", err)
	}
	if _, err := first.Receive(10 * time.Millisecond); err != nil {
		t.Errorf("first listener after the refusal: %v", err)
	}
}

// TestKernelClose: Close ends a Receive waiting in another goroutine.
func TestKernelClose(t *testing.T) {
	ns := logNS(t, "tapfw-close")
	c, err := listen(ns, 5)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Receive(time.Minute)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Receive after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Receive")
	}
}
