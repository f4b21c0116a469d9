// Package testnet builds throw-away bridged networks of Linux network namespaces and probes them with real packets.
package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every namespace created by NewNS.
const NamePrefix = "tfw"

// brStateForwarding is BR_STATE_FORWARDING from linux/if_bridge.h.
const brStateForwarding = 3

// portReadyTimeout bounds how long AddPort waits for the bridge port to forward.
const portReadyTimeout = 5 * time.Second

// NS is a named network namespace created by this package (`ip netns add`),
// so `ip netns exec NAME` works.
type NS struct {
	Name string // namespace name as shown by `ip netns list`
	Path string // bind mount of the namespace, /var/run/netns/NAME

	closeOnce sync.Once
	closeErr  error
}

// NewNS creates a namespace named NamePrefix+prefix+"-"+6 random hex digits,
// disables IPv6 in it and brings lo up. In a test binary it refuses
// unless GuardHost lets the kernel tests run (see NeedKernel).
func NewNS(prefix string) (*NS, error) {
	if err := kernelRefused(); err != nil {
		return nil, err
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("random namespace suffix: %w", err)
	}
	name := NamePrefix + prefix + "-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	n := &NS{Name: name, Path: filepath.Join("/var/run/netns", name)}
	if err := n.setup(); err != nil {
		_ = n.Close()
		return nil, fmt.Errorf("set up namespace %s: %w", name, err)
	}
	return n, nil
}

func (n *NS) setup() error {
	for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		// IPv6 may be compiled out or disabled at boot; then there is nothing to silence.
		if err := n.Sysctl(key, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return n.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
}

// Close deletes the namespace; calling it again returns the first result.
func (n *NS) Close() error {
	n.closeOnce.Do(func() {
		if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
			n.closeErr = fmt.Errorf("ip netns delete %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
		}
	})
	return n.closeErr
}

// Do runs f on an OS thread switched into the namespace; sockets f creates
// belong to the namespace. Goroutines started by f do not inherit it.
func (n *NS) Do(f func() error) error {
	target, err := netns.GetFromPath(n.Path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// A fresh goroutine owns the thread: if switching back fails it exits
		// still locked, and the runtime discards the thread instead of reusing it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		defer func() {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
		errc <- f()
	}()
	return <-errc
}

// DialContext connects to addr from inside the namespace (what an
// http.Transport's DialContext takes); the connection, once made,
// serves any goroutine.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Run runs `ip netns exec NAME args...` and returns its combined output;
// the error includes that output.
func (n *NS) Run(args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Sysctl writes value to the namespace's /proc/sys entry for key, e.g. ("net.ipv4.ip_forward", "1").
func (n *NS) Sysctl(key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return n.Do(func() error {
		// /proc/sys/net resolves against the netns of the opening thread.
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// AddBridge creates bridge name in host with STP off and forward_delay 0,
// assigns addrCIDR unless it is "", and sets it up.
func AddBridge(host *NS, name string, addrCIDR string) error {
	// A fixed MAC keeps the bridge from taking over its lowest port's MAC,
	// which would change under peers' ARP caches as ports come and go.
	mac := randomMAC()
	if _, err := host.Run("ip", "link", "add", "name", name, "address", mac.String(),
		"type", "bridge", "forward_delay", "0", "stp_state", "0"); err != nil {
		return fmt.Errorf("add bridge %s: %w", name, err)
	}
	return host.Do(func() error {
		br, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find bridge %s: %w", name, err)
		}
		if err := addAddr(br, addrCIDR); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return fmt.Errorf("set bridge %s up: %w", name, err)
		}
		return nil
	})
}

// AddPort connects peer to bridge in host with a veth pair: the host end is
// named port, enslaved to bridge and up; the peer end is eth0 in peer with
// the given MAC, address (CIDR) and default gateway, each skipped when "".
// It returns once the bridge forwards on the port.
func AddPort(host *NS, bridge, port string, peer *NS, mac, addrCIDR, gateway string) error {
	var hw net.HardwareAddr
	if mac != "" {
		var err error
		if hw, err = net.ParseMAC(mac); err != nil {
			return fmt.Errorf("port %s: parse mac: %w", port, err)
		}
	}
	var gw net.IP
	if gateway != "" {
		if gw = net.ParseIP(gateway); gw == nil {
			return fmt.Errorf("port %s: invalid gateway %q", port, gateway)
		}
	}
	peerNS, err := netns.GetFromPath(peer.Path)
	if err != nil {
		return fmt.Errorf("port %s: open peer namespace %s: %w", port, peer.Name, err)
	}
	defer peerNS.Close()

	var index int
	err = host.Do(func() error {
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("find bridge %s: %w", bridge, err)
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index},
			PeerName:         "eth0",
			PeerHardwareAddr: hw,
			PeerNamespace:    netlink.NsFd(int(peerNS)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", port, err)
		}
		link, err := netlink.LinkByName(port)
		if err != nil {
			return fmt.Errorf("find %s: %w", port, err)
		}
		index = link.Attrs().Index
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", port, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("port %s in %s: %w", port, host.Name, err)
	}

	err = peer.Do(func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0: %w", err)
		}
		if err := addAddr(eth0, addrCIDR); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("set eth0 up: %w", err)
		}
		if gw != nil {
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw}); err != nil {
				return fmt.Errorf("add default route via %s: %w", gw, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("port %s: peer %s: %w", port, peer.Name, err)
	}
	return host.Do(func() error { return waitForwarding(port, index) })
}

func addAddr(link netlink.Link, cidr string) error {
	if cidr == "" {
		return nil
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("parse address %q: %w", cidr, err)
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", cidr, link.Attrs().Name, err)
	}
	return nil
}

// waitForwarding polls the bridge port state of link index until it is
// forwarding. The bridge only notices veth carrier through linkwatch, which
// may lag by up to a second, so the port is not usable right after "up".
func waitForwarding(name string, index int) error {
	deadline := time.Now().Add(portReadyTimeout)
	for {
		state, err := bridgePortState(index)
		if err == nil && state == brStateForwarding {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("state %d", state)
			}
			return fmt.Errorf("bridge port %s not forwarding after %v: %w", name, portReadyTimeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bridgePortState returns IFLA_BRPORT_STATE of link index (an AF_BRIDGE link dump).
func bridgePortState(index int) (uint8, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return 0, fmt.Errorf("dump bridge ports: %w", err)
	}
	for _, m := range msgs {
		ifi := nl.DeserializeIfInfomsg(m)
		if int(ifi.Index) != index {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[ifi.Len():])
		if err != nil {
			return 0, fmt.Errorf("parse bridge port: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_PROTINFO {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, fmt.Errorf("parse bridge port info: %w", err)
			}
			for _, info := range infos {
				if info.Attr.Type == unix.IFLA_BRPORT_STATE && len(info.Value) > 0 {
					return info.Value[0], nil
				}
			}
		}
	}
	return 0, errors.New("no bridge port state reported")
}

// randomMAC returns a random unicast, locally administered MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}
