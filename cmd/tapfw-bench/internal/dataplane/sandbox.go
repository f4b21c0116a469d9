package dataplane

import (
	"context"
	"net"

	"golang.org/x/sys/unix"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/rulecheck"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/traffic"
	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// The data-plane sandbox:
//
//	ns A (VM a: 192.0.2.10) --eth0/port tapX--+
//	                                          vmbr0 192.0.2.1 (host ns) + N managed taps (config only)
//	ns B (VM b: 192.0.2.11) --eth0/port tapY--+
//
// The firewalled sandbox has tapfw installed for the N taps and for both
// VMs, whose ports are named like taps: N+2 taps are installed, the two
// worst-placed of them (found by walking every tap's packets through the
// installed rules with pkg/explain, rulecheck.Scan) are deleted and the
// VMs added under their names, last. A twin sandbox, built the same way,
// has no firewall at all and gives the figure beside. Static FDB and
// neighbour entries keep ARP and flooding out of the way.

const bridge = "vmbr0"

type sandbox struct {
	name         string
	host, a, b   *testnet.NS
	portA, portB string
	bridgeMAC    net.HardwareAddr
	sinks        []int
	vmsAdded     bool
	vmIdx        [2]int // tap indices (names) of VM a and VM b
}

func (s *sandbox) close() {
	for _, fd := range s.sinks {
		_ = unix.Close(fd)
	}
	s.sinks = nil
}

func newSandbox(h *harness.Harness, name, prefix string) (*sandbox, error) {
	s := &sandbox{name: name}
	var err error
	if s.host, err = h.NewHostNS(prefix+"h", nil); err != nil {
		return nil, err
	}
	if s.a, err = h.NewNS(prefix + "a"); err != nil {
		return nil, err
	}
	if s.b, err = h.NewNS(prefix + "b"); err != nil {
		return nil, err
	}
	if err := testnet.AddBridge(s.host, bridge, taps.HostIP+"/24"); err != nil {
		return nil, err
	}
	if s.bridgeMAC, err = testnet.LinkMAC(s.host, bridge); err != nil {
		return nil, err
	}
	for _, ns := range []*testnet.NS{s.b, s.host} {
		fd, err := traffic.UDPSink(ns, taps.BenchPort)
		if err != nil {
			return nil, err
		}
		s.sinks = append(s.sinks, fd)
	}
	return s, nil
}

// setPorts (re)creates the VMs' ports under the names of taps ia and ib.
func (s *sandbox) setPorts(ctx context.Context, ia, ib int) error {
	for _, p := range []string{s.portA, s.portB} {
		if p != "" {
			if _, err := harness.NSRun(ctx, s.host, nil, "ip", "link", "del", p); err != nil {
				return err
			}
		}
	}
	s.vmIdx = [2]int{ia, ib}
	vms := s.vmTaps()
	s.portA, s.portB = vms[0].Name, vms[1].Name
	if err := testnet.AddPort(s.host, bridge, s.portA, s.a, taps.VMAMAC, taps.VMAIP+"/24", ""); err != nil {
		return err
	}
	if err := testnet.AddPort(s.host, bridge, s.portB, s.b, taps.VMBMAC, taps.VMBIP+"/24", ""); err != nil {
		return err
	}
	cmds := [][]string{
		{"bridge", "fdb", "replace", taps.VMAMAC, "dev", s.portA, "master", "static"},
		{"bridge", "fdb", "replace", taps.VMBMAC, "dev", s.portB, "master", "static"},
		{"ip", "neigh", "replace", taps.VMBIP, "lladdr", taps.VMBMAC, "dev", bridge, "nud", "permanent"},
		{"ip", "neigh", "replace", taps.VMAIP, "lladdr", taps.VMAMAC, "dev", bridge, "nud", "permanent"},
	}
	for _, c := range cmds {
		if _, err := harness.NSRun(ctx, s.host, nil, c...); err != nil {
			return err
		}
	}
	for _, vm := range []*testnet.NS{s.a, s.b} {
		if _, err := harness.NSRun(ctx, vm, nil, "ip", "neigh", "replace", taps.HostIP, "lladdr", s.bridgeMAC.String(), "dev", "eth0", "nud", "permanent"); err != nil {
			return err
		}
	}
	return nil
}

func (s *sandbox) vmTaps() []taps.Spec {
	return []taps.Spec{taps.VM(s.vmIdx[0], bridge, taps.VMAMAC, taps.VMAIP), taps.VM(s.vmIdx[1], bridge, taps.VMBMAC, taps.VMBIP)}
}

// vmPorts are the VMs' taps as explain's packets see them.
func (s *sandbox) vmPorts() (a, b rulecheck.Port) {
	vms := s.vmTaps()
	return vms[0].Port(), vms[1].Port()
}

type pathSpec struct {
	name, desc string
	hook       string // built-in chain the packets enter
	recv       func(*sandbox) *testnet.NS
	flow       func(*sandbox) (*traffic.Flow, error)
	tap        func(*sandbox) string
	packet     func(*sandbox) explain.Packet // the VMs' packet, for pkg/explain
}

var paths = []pathSpec{
	{"forward", "VM to VM (bridged, FORWARD)", "FORWARD",
		func(s *sandbox) *testnet.NS { return s.b },
		func(s *sandbox) (*traffic.Flow, error) {
			return traffic.NewFrameFlow(s.a, "eth0", taps.MustMAC(taps.VMAMAC), taps.MustMAC(taps.VMBMAC), taps.VMAIP, taps.VMBIP, taps.BenchPort)
		},
		func(s *sandbox) string { return s.portA + " -> " + s.portB },
		func(s *sandbox) explain.Packet { return benchFlow.Forward(s.vmPorts()) }},
	{"input", "VM to host (INPUT)", "INPUT",
		func(s *sandbox) *testnet.NS { return s.host },
		func(s *sandbox) (*traffic.Flow, error) {
			return traffic.NewFrameFlow(s.a, "eth0", taps.MustMAC(taps.VMAMAC), s.bridgeMAC, taps.VMAIP, taps.HostIP, taps.BenchPort)
		},
		func(s *sandbox) string { return s.portA },
		func(s *sandbox) explain.Packet { a, _ := s.vmPorts(); return benchFlow.Input(a) }},
	{"output", "host to VM (OUTPUT)", "OUTPUT",
		func(s *sandbox) *testnet.NS { return s.b },
		func(s *sandbox) (*traffic.Flow, error) {
			return traffic.NewIPFlow(s.host, taps.HostIP, taps.VMBIP, taps.BenchPort)
		},
		func(s *sandbox) string { return s.portB },
		func(s *sandbox) explain.Packet { _, b := s.vmPorts(); return benchFlow.Output(b) }},
}
