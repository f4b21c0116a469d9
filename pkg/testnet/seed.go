package testnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// The seed's sample network (shared/seed/000_*.txt), rebuilt in sandbox
// namespaces with documentation addresses instead of 10.3.94.0/24 and
// 10.2.0.0/24:
//
//	router ns (external router: 192.0.2.1/24, secondary 192.0.2.47/24, a cluster host)
//	   | port uplink0
//	host ns: vmbr0 192.0.2.31/24 --- port tap110i0 -> ns vm110: eth0 192.0.2.200/24 gw 192.0.2.31
//	                              --- port tap123i0 -> ns vm123: eth0 192.0.2.201/24 gw 192.0.2.1
//	         vmbr1 198.51.100.1/24 -- port tap115i0 -> ns vm115: eth0 198.51.100.2/24 gw 198.51.100.1
//	host: net.ipv4.ip_forward=1
//
// The "taps" are veth pairs: the host end is the bridge port named like the
// QEMU tap, the other end is eth0 of the VM's namespace, with the VM's MAC
// from the seed. The plugin configs of the three taps are in testdata/seed.
const (
	SeedRouterIP  = "192.0.2.1"
	SeedClusterIP = "192.0.2.47" // the router's secondary address: a cluster host
	SeedHostIP0   = "192.0.2.31" // vmbr0
	SeedHostIP1   = "198.51.100.1"
	SeedVM110IP   = "192.0.2.200"
	SeedVM123IP   = "192.0.2.201"
	SeedVM115IP   = "198.51.100.2"
	SeedVM110MAC  = "1e:0b:85:27:8d:65"
	SeedVM123MAC  = "e6:5f:f3:d4:2e:a6"
	SeedVM115MAC  = "32:36:8a:e1:b5:65"
)

// Probe timeouts. A probe that should pass is given time to spare, since
// waiting longer costs nothing when the packet arrives; a probe that should
// be dropped waits only briefly, since every such probe waits it out.
const (
	probePassTimeout = 2 * time.Second
	probeDropTimeout = 400 * time.Millisecond
)

// SeedTaps returns the names of the seed's taps, in the order Install and
// Remove call the plugin: tap110i0, tap123i0, tap115i0.
func SeedTaps() []string { return []string{"tap110i0", "tap123i0", "tap115i0"} }

// seedContainerID is the CNI_CONTAINERID used for tap: "vm110" for tap110i0.
func seedContainerID(tap string) string {
	return "vm" + tap[len("tap"):len("tap")+3]
}

// Seed is the seed's sample network, running: five namespaces, the bridges
// and ports, and the servers the probes talk to. NewSeed builds it, Close
// removes it. Its methods may not be called concurrently with Close.
type Seed struct {
	// Host is the hypervisor: bridges vmbr0 and vmbr1, the taps' host ends,
	// and the place where the plugin runs and installs its chains.
	Host *NS
	// Router is the external router on vmbr0 (port uplink0), not firewalled.
	Router *NS
	// VM110, VM123 and VM115 are the VMs behind tap110i0, tap123i0 and tap115i0.
	VM110, VM123, VM115 *NS

	// Env is added to the environment of every plugin call made through
	// Call, Install and Remove, e.g. "TAPFW_IPTABLES=legacy".
	Env []string

	routerMAC net.HardwareAddr
	// UDP listeners whose payloads the frame probes look for.
	router9000, router68, host67 *UDPListener
	closers                      []io.Closer // servers, closed in reverse order
	seq                          atomic.Uint64
	id                           string // distinguishes this Seed's payloads from another's
}

// seedIDs numbers Seeds within a process, so payloads are unique across Seeds too.
var seedIDs atomic.Uint64

// NewSeed builds the sample network and starts every listener the probes
// need: TCP 22 and 80 and UDP 9000 and 68 on the router (192.0.2.1), TCP 22
// and 80 on vm110, TCP 22 on vm115, TCP 22 and 8080 and UDP 67 on all of the
// host's addresses. It installs no firewall. On error it removes whatever it
// had made and returns nil.
func NewSeed() (*Seed, error) {
	s := &Seed{id: fmt.Sprintf("%d.%d", os.Getpid(), seedIDs.Add(1))}
	for _, step := range []func() error{s.addNamespaces, s.addBridges, s.addPorts, s.serveTCP, s.listenUDP} {
		if err := step(); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// addNamespaces makes the five namespaces: the host, the router and the
// three VMs.
func (s *Seed) addNamespaces() error {
	for _, n := range []struct {
		ns     **NS
		prefix string
	}{
		{&s.Host, "host"}, {&s.Router, "rtr"}, {&s.VM110, "vm110"}, {&s.VM123, "vm123"}, {&s.VM115, "vm115"},
	} {
		var err error
		if *n.ns, err = NewNS(n.prefix); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// addBridges makes the host a router (ip_forward) with bridges vmbr0 and
// vmbr1 and its addresses on them.
func (s *Seed) addBridges() error {
	if err := s.Host.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := AddBridge(s.Host, "vmbr0", SeedHostIP0+"/24"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := AddBridge(s.Host, "vmbr1", SeedHostIP1+"/24"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// addPorts connects the router and the VMs to their bridges, each with its
// address, MAC and gateway, gives the router its cluster address and
// notes the router's MAC.
func (s *Seed) addPorts() error {
	ports := []struct {
		bridge, port string
		peer         *NS
		mac, addr    string
		gw           string
	}{
		{"vmbr0", "uplink0", s.Router, "", SeedRouterIP + "/24", ""},
		{"vmbr0", "tap110i0", s.VM110, SeedVM110MAC, SeedVM110IP + "/24", SeedHostIP0},
		{"vmbr0", "tap123i0", s.VM123, SeedVM123MAC, SeedVM123IP + "/24", SeedRouterIP},
		{"vmbr1", "tap115i0", s.VM115, SeedVM115MAC, SeedVM115IP + "/24", SeedHostIP1},
	}
	for _, p := range ports {
		if err := AddPort(s.Host, p.bridge, p.port, p.peer, p.mac, p.addr, p.gw); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	if _, err := s.Router.Run("ip", "addr", "add", SeedClusterIP+"/24", "dev", "eth0"); err != nil {
		return fmt.Errorf("seed: router's cluster address: %w", err)
	}
	var err error
	if s.routerMAC, err = LinkMAC(s.Router, "eth0"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// serveTCP starts the TCP servers the probes connect to.
func (s *Seed) serveTCP() error {
	tcp := []struct {
		ns   *NS
		addr string
	}{
		{s.Router, SeedRouterIP + ":22"}, {s.Router, SeedRouterIP + ":80"},
		{s.VM110, SeedVM110IP + ":22"}, {s.VM110, SeedVM110IP + ":80"},
		{s.VM115, SeedVM115IP + ":22"},
		{s.Host, "0.0.0.0:22"}, {s.Host, "0.0.0.0:8080"},
	}
	for _, l := range tcp {
		c, err := TCPServe(l.ns, l.addr)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		s.closers = append(s.closers, c)
	}
	return nil
}

// listenUDP starts the UDP listeners whose payloads the frame probes look
// for.
func (s *Seed) listenUDP() error {
	udp := []struct {
		l    **UDPListener
		ns   *NS
		addr string
	}{
		{&s.router9000, s.Router, SeedRouterIP + ":9000"},
		{&s.router68, s.Router, SeedRouterIP + ":68"},
		{&s.host67, s.Host, "0.0.0.0:67"},
	}
	for _, u := range udp {
		l, err := UDPListen(u.ns, u.addr)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		*u.l = l
		s.closers = append(s.closers, l)
	}
	return nil
}

// Close stops the servers and deletes the namespaces (which removes the
// bridges, ports and any firewall installed in the host namespace). It
// returns the first error and keeps going after it; a second call does
// nothing more.
func (s *Seed) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	for _, n := range []*NS{s.VM115, s.VM123, s.VM110, s.Router, s.Host} {
		if n != nil {
			if err := n.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Namespaces returns the seed's namespaces: host, router, vm110, vm123, vm115.
func (s *Seed) Namespaces() []*NS {
	return []*NS{s.Host, s.Router, s.VM110, s.VM123, s.VM115}
}

// Probe is one test of the seed's firewall with real packets.
type Probe struct {
	Name string
	// Want is the verdict with the seed's firewall installed: true means
	// the packet must arrive (or the TCP handshake complete). Without the
	// firewall every probe passes.
	Want bool
	// Why names the rule that decides, in one short line.
	Why string
	// Shared is true when the deciding rule is in a chain that all taps
	// share (the host firewall, the inter-bridge routing drop) rather than
	// in a tap's own chains.
	Shared bool
}

// ThroughTap reports whether the probe's packets cross a VM's tap (every
// probe but those between the router and the host).
func (p Probe) ThroughTap() bool { return strings.Contains(p.Name, "vm1") }

// seedProbe is a Probe and how to send it. payload is unique to the run.
type seedProbe struct {
	Probe
	send func(s *Seed, payload []byte, timeout time.Duration) bool
}

// tcpProbe connects from ns (from source srcIP, "" for the kernel's choice) to addr.
func tcpProbe(ns func(*Seed) *NS, srcIP, addr string) func(*Seed, []byte, time.Duration) bool {
	return func(s *Seed, _ []byte, timeout time.Duration) bool {
		return TCPProbeFrom(ns(s), srcIP, addr, timeout)
	}
}

// frameSpec describes a hand-made UDP frame; empty MACs mean the sender's
// own MAC and the router's MAC.
type frameSpec struct {
	from             func(*Seed) *NS
	srcMAC, dstMAC   string
	srcIP, dstIP     string
	srcPort, dstPort uint16
	to               func(*Seed) *UDPListener
}

// frameProbe sends the frame out of the sender's eth0 and waits for its
// payload at the listener.
func frameProbe(f frameSpec) func(*Seed, []byte, time.Duration) bool {
	return func(s *Seed, payload []byte, timeout time.Duration) bool {
		from := f.from(s)
		fr := Frame{
			SrcIP: net.ParseIP(f.srcIP), DstIP: net.ParseIP(f.dstIP),
			SrcPort: f.srcPort, DstPort: f.dstPort,
			Payload: payload,
		}
		var err error
		if f.srcMAC != "" {
			fr.SrcMAC, err = net.ParseMAC(f.srcMAC)
		} else {
			fr.SrcMAC, err = LinkMAC(from, "eth0")
		}
		if err != nil {
			return false
		}
		if f.dstMAC != "" {
			if fr.DstMAC, err = net.ParseMAC(f.dstMAC); err != nil {
				return false
			}
		} else {
			fr.DstMAC = s.routerMAC
		}
		if err := SendFrame(from, "eth0", fr); err != nil {
			return false
		}
		return f.to(s).Got(payload, timeout)
	}
}

func host(s *Seed) *NS                   { return s.Host }
func router(s *Seed) *NS                 { return s.Router }
func vm110(s *Seed) *NS                  { return s.VM110 }
func vm123(s *Seed) *NS                  { return s.VM123 }
func vm115(s *Seed) *NS                  { return s.VM115 }
func routerUDP9000(s *Seed) *UDPListener { return s.router9000 }
func routerUDP68(s *Seed) *UDPListener   { return s.router68 }
func hostUDP67(s *Seed) *UDPListener     { return s.host67 }

// seedProbes is the probe table; see Probes.
var seedProbes = []seedProbe{
	{Probe{"router -> vm110 tcp/22", true, "tap110i0 IN rule 1 (ssh) accepts", false},
		tcpProbe(router, "", SeedVM110IP+":22")},
	{Probe{"router -> vm110 tcp/80", false, "tap110i0 IN policy drop", false},
		tcpProbe(router, "", SeedVM110IP+":80")},
	{Probe{"vm110 -> router tcp/22", true, "tap110i0 OUT rule 1 (ssh) returns; uplink0 is no tap", false},
		tcpProbe(vm110, "", SeedRouterIP+":22")},
	{Probe{"vm110 -> router tcp/80", false, "tap110i0 OUT policy drop", false},
		tcpProbe(vm110, "", SeedRouterIP+":80")},
	{Probe{"host -> vm110 tcp/22", true, "host OUT rule 1 (ssh), tap110i0 IN rule 1 (ssh)", false},
		tcpProbe(host, SeedHostIP0, SeedVM110IP+":22")},
	{Probe{"host -> vm110 tcp/80", false, "host OUT policy drop (before tap110i0 IN)", true},
		tcpProbe(host, SeedHostIP0, SeedVM110IP+":80")},
	{Probe{"vm123 -> vm110 tcp/22", true, "tap123i0 OUT policy accept, tap110i0 IN rule 1", false},
		tcpProbe(vm123, "", SeedVM110IP+":22")},
	{Probe{"vm123 -> vm110 tcp/80", false, "tap110i0 IN policy drop", false},
		tcpProbe(vm123, "", SeedVM110IP+":80")},
	{Probe{"vm110 -> vm115 tcp/22 (routed)", false, "TFW-FORWARD: no routing between bridges", true},
		tcpProbe(vm110, "", SeedVM115IP+":22")},
	{Probe{"vm123 -> router udp/9000 raw", true, "tap123i0 OUT: own MAC and IP, policy accept", false},
		frameProbe(frameSpec{from: vm123, srcIP: SeedVM123IP, dstIP: SeedRouterIP, srcPort: 40000, dstPort: 9000, to: routerUDP9000})},
	{Probe{"vm123 -> router udp/9000 forged IP", false, "tap123i0 OUT ip anti-spoof (192.0.2.99)", false},
		frameProbe(frameSpec{from: vm123, srcIP: "192.0.2.99", dstIP: SeedRouterIP, srcPort: 40000, dstPort: 9000, to: routerUDP9000})},
	{Probe{"vm123 -> router udp/9000 forged MAC", false, "tap123i0 OUT mac anti-spoof", false},
		frameProbe(frameSpec{from: vm123, srcMAC: "02:00:00:00:00:99", srcIP: SeedVM123IP, dstIP: SeedRouterIP, srcPort: 40000, dstPort: 9000, to: routerUDP9000})},
	{Probe{"vm123 -> router udp 67->68", false, "tap123i0 OUT: no DHCP server replies", false},
		frameProbe(frameSpec{from: vm123, srcIP: SeedVM123IP, dstIP: SeedRouterIP, srcPort: 67, dstPort: 68, to: routerUDP68})},
	{Probe{"vm123 -> router udp 5000->68", true, "tap123i0 OUT policy accept", false},
		frameProbe(frameSpec{from: vm123, srcIP: SeedVM123IP, dstIP: SeedRouterIP, srcPort: 5000, dstPort: 68, to: routerUDP68})},
	{Probe{"vm115 DHCP 0.0.0.0:68 -> bcast:67", true, "tap115i0 OUT: DHCP request allowed before ip anti-spoof", false},
		frameProbe(frameSpec{from: vm115, dstMAC: "ff:ff:ff:ff:ff:ff", srcIP: "0.0.0.0", dstIP: "255.255.255.255", srcPort: 68, dstPort: 67, to: hostUDP67})},
	{Probe{"vm115 0.0.0.0:1234 -> bcast:67", false, "tap115i0 OUT ip anti-spoof (0.0.0.0)", false},
		frameProbe(frameSpec{from: vm115, dstMAC: "ff:ff:ff:ff:ff:ff", srcIP: "0.0.0.0", dstIP: "255.255.255.255", srcPort: 1234, dstPort: 67, to: hostUDP67})},
	{Probe{"router -> host tcp/22", true, "host IN rule 1 (ssh)", true},
		tcpProbe(router, SeedRouterIP, SeedHostIP0+":22")},
	{Probe{"router -> host tcp/8080", false, "host IN policy drop", true},
		tcpProbe(router, SeedRouterIP, SeedHostIP0+":8080")},
	{Probe{"router .47 -> host tcp/8080", true, "host IN: source in cluster hosts set", true},
		tcpProbe(router, SeedClusterIP, SeedHostIP0+":8080")},
	{Probe{"vm110 -> host tcp/22", true, "tap110i0 OUT rule 1 (ssh), host IN rule 1", false},
		tcpProbe(vm110, "", SeedHostIP0+":22")},
	{Probe{"vm115 -> host tcp/22", false, "tap115i0 OUT policy drop", false},
		tcpProbe(vm115, "", SeedHostIP1+":22")},
}

// Probes returns the probe table, in a fixed order. Every probe passes on
// the bare network; Want is the verdict with the seed's firewall installed.
func (s *Seed) Probes() []Probe {
	out := make([]Probe, len(seedProbes))
	for i, p := range seedProbes {
		out[i] = p.Probe
	}
	return out
}

// Run sends probe p and reports whether it arrived: the TCP handshake
// completed, or the UDP payload reached its listener. Every run of a UDP
// probe carries a payload of its own (Seed, probe name, sequence number) and
// every TCP probe is a new connection from a fresh source port, so one run
// never sees another's packets. It waits up to 2 s when p is expected to
// pass and 400 ms when it is expected to be dropped. An unknown probe name
// returns false.
func (s *Seed) Run(p Probe) bool {
	for _, sp := range seedProbes {
		if sp.Name != p.Name {
			continue
		}
		timeout := probeDropTimeout
		if sp.Want {
			timeout = probePassTimeout
		}
		payload := fmt.Appendf(nil, "tapfw-seed %s #%d %s", s.id, s.seq.Add(1), sp.Name)
		return sp.send(s, payload, timeout)
	}
	return false
}

// Call runs the plugin bin in the host namespace with command (ADD, CHECK,
// DEL...) for tap, as a QEMU ifup/ifdown script would: the config is
// confDir/<tap>.json on stdin, CNI_CONTAINERID is "vm110" for tap110i0, and
// CNI_IFNAME is the tap. s.Env is added to the environment. It returns the
// plugin's stdout.
func (s *Seed) Call(bin, confDir, command, tap string) ([]byte, error) {
	conf, err := os.ReadFile(filepath.Join(confDir, tap+".json"))
	if err != nil {
		return nil, fmt.Errorf("seed: config of %s: %w", tap, err)
	}
	return CallPlugin(s.Host, Call{
		Bin:         bin,
		Command:     command,
		ContainerID: seedContainerID(tap),
		IfName:      tap,
		Env:         s.Env,
		Config:      conf,
	})
}

// Install calls the plugin with ADD for every tap of SeedTaps, in order,
// and stops at the first failure. A second call re-applies the same configs
// and changes nothing.
func (s *Seed) Install(bin, confDir string) error {
	for _, tap := range SeedTaps() {
		if _, err := s.Call(bin, confDir, "ADD", tap); err != nil {
			return err
		}
	}
	return nil
}

// Remove calls the plugin with DEL for every tap of SeedTaps, in order. It
// tries every tap and returns the errors joined. A second call finds
// nothing to remove and succeeds.
func (s *Seed) Remove(bin, confDir string) error {
	var errs []error
	for _, tap := range SeedTaps() {
		if _, err := s.Call(bin, confDir, "DEL", tap); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
