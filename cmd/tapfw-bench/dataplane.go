package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/rulecheck"
	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/netfilter"
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
// installed rules with pkg/explain, rulecheck.Scan)
// are deleted and the VMs added under their names, last. A twin sandbox,
// built the same way, has no firewall at all and gives the figure beside.
// Static FDB and neighbour entries keep ARP and flooding out of the way.

const dpBridge = "vmbr0"

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

func (b *bench) newSandbox(ctx context.Context, name, prefix string) (*sandbox, error) {
	s := &sandbox{name: name}
	var err error
	if s.host, err = b.newHostNS(prefix+"h", nil); err != nil {
		return nil, err
	}
	if s.a, err = b.newNS(prefix + "a"); err != nil {
		return nil, err
	}
	if s.b, err = b.newNS(prefix + "b"); err != nil {
		return nil, err
	}
	if err := testnet.AddBridge(s.host, dpBridge, dpHostIP+"/24"); err != nil {
		return nil, err
	}
	if s.bridgeMAC, err = testnet.LinkMAC(s.host, dpBridge); err != nil {
		return nil, err
	}
	for _, x := range []struct {
		ns   *testnet.NS
		port int
	}{{s.b, benchPort}, {s.host, benchPort}} {
		fd, err := udpSink(x.ns, x.port)
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
			if _, err := nsRun(ctx, s.host, nil, "ip", "link", "del", p); err != nil {
				return err
			}
		}
	}
	s.vmIdx = [2]int{ia, ib}
	vms := s.vmTaps()
	s.portA, s.portB = vms[0].Name, vms[1].Name
	if err := testnet.AddPort(s.host, dpBridge, s.portA, s.a, dpVMAMAC, dpVMAIP+"/24", ""); err != nil {
		return err
	}
	if err := testnet.AddPort(s.host, dpBridge, s.portB, s.b, dpVMBMAC, dpVMBIP+"/24", ""); err != nil {
		return err
	}
	cmds := [][]string{
		{"bridge", "fdb", "replace", dpVMAMAC, "dev", s.portA, "master", "static"},
		{"bridge", "fdb", "replace", dpVMBMAC, "dev", s.portB, "master", "static"},
		{"ip", "neigh", "replace", dpVMBIP, "lladdr", dpVMBMAC, "dev", dpBridge, "nud", "permanent"},
		{"ip", "neigh", "replace", dpVMAIP, "lladdr", dpVMAMAC, "dev", dpBridge, "nud", "permanent"},
	}
	for _, c := range cmds {
		if _, err := nsRun(ctx, s.host, nil, c...); err != nil {
			return err
		}
	}
	for _, vm := range []*testnet.NS{s.a, s.b} {
		if _, err := nsRun(ctx, vm, nil, "ip", "neigh", "replace", dpHostIP, "lladdr", s.bridgeMAC.String(), "dev", "eth0", "nud", "permanent"); err != nil {
			return err
		}
	}
	return nil
}

func (s *sandbox) vmTaps() []tapSpec {
	return []tapSpec{vmTap(s.vmIdx[0], dpBridge, dpVMAMAC, dpVMAIP), vmTap(s.vmIdx[1], dpBridge, dpVMBMAC, dpVMBIP)}
}

// vmPorts are the VMs' taps as explain's packets see them.
func (s *sandbox) vmPorts() (a, b rulecheck.Port) {
	vms := s.vmTaps()
	return vms[0].port(), vms[1].port()
}

// PathResult is one direction of traffic at one N.
type PathResult struct {
	Path         string        `json:"path"` // forward, input, output
	Desc         string        `json:"desc"`
	FwPPS        float64       `json:"fwPps"`
	NoFwPPS      float64       `json:"noFwPps"`
	Ratio        float64       `json:"ratio"` // firewall / no firewall
	FwSentPPS    float64       `json:"fwSentPps"`
	NoFwSentPPS  float64       `json:"noFwSentPps"`
	NewFlowShare float64       `json:"newFlowShare"` // share of packets that made a new conntrack entry (firewalled)
	Checks       *RuleChecks   `json:"ruleChecks,omitempty"`
	Static       *StaticChecks `json:"staticChecks,omitempty"`
	CheckedTap   string        `json:"checkedTap"` // the tap whose dispatch the count follows
	CountRecv    uint64        `json:"countReceived"`
}

// DPResult is the data plane at one N.
type DPResult struct {
	N          int          `json:"n"` // managed taps on the bridge besides the two VMs
	Paths      []PathResult `json:"paths"`
	VMs        []string     `json:"vms"`
	Placement  string       `json:"placement"` // how the VMs' taps were chosen
	CtCount    uint64       `json:"ctEntriesAfter"`
	PopulateS  float64      `json:"populateSeconds"`
	TableRules int          `json:"tableRules"`
}

type pathSpec struct {
	name, desc string
	hook       string // built-in chain the packets enter
	recv       func(*sandbox) *testnet.NS
	flow       func(*sandbox) (*flow, error)
	tap        func(*sandbox) string
	packet     func(*sandbox) explain.Packet // the VMs' packet, for pkg/explain
}

var paths = []pathSpec{
	{"forward", "VM to VM (bridged, FORWARD)", "FORWARD",
		func(s *sandbox) *testnet.NS { return s.b },
		func(s *sandbox) (*flow, error) {
			return newFrameFlow(s.a, "eth0", mustMAC(dpVMAMAC), mustMAC(dpVMBMAC), dpVMAIP, dpVMBIP)
		},
		func(s *sandbox) string { return s.portA + " -> " + s.portB },
		func(s *sandbox) explain.Packet { return benchFlow.Forward(s.vmPorts()) }},
	{"input", "VM to host (INPUT)", "INPUT",
		func(s *sandbox) *testnet.NS { return s.host },
		func(s *sandbox) (*flow, error) {
			return newFrameFlow(s.a, "eth0", mustMAC(dpVMAMAC), s.bridgeMAC, dpVMAIP, dpHostIP)
		},
		func(s *sandbox) string { return s.portA },
		func(s *sandbox) explain.Packet { a, _ := s.vmPorts(); return benchFlow.Input(a) }},
	{"output", "host to VM (OUTPUT)", "OUTPUT",
		func(s *sandbox) *testnet.NS { return s.b },
		func(s *sandbox) (*flow, error) { return newIPFlow(s.host, dpHostIP, dpVMBIP) },
		func(s *sandbox) string { return s.portB },
		func(s *sandbox) explain.Packet { _, b := s.vmPorts(); return benchFlow.Output(b) }},
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// pps sends on p's flow for d and returns received and sent packets per second.
func (b *bench) pps(s *sandbox, p pathSpec, d time.Duration) (recv, sent float64, err error) {
	f, err := p.flow(s)
	if err != nil {
		return 0, 0, err
	}
	defer f.close()
	// Warm up: caches, the bridge's path, conntrack's first entries.
	if _, _, err := f.flood(100 * time.Millisecond); err != nil {
		return 0, 0, err
	}
	time.Sleep(50 * time.Millisecond)
	rx := p.recv(s)
	before, err := udpCounter(rx)
	if err != nil {
		return 0, 0, err
	}
	n, el, err := f.flood(d)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(100 * time.Millisecond) // let the queues drain
	after, err := udpCounter(rx)
	if err != nil {
		return 0, 0, err
	}
	return float64(after-before) / el.Seconds(), float64(n) / el.Seconds(), nil
}

// newShare checks that every packet of a flood is a new conntrack entry:
// two rules without a target at the top of the path's built-in chain
// (after conntrack has looked the packet up, before it confirms a new
// entry) count the bench's packets, and those whose entry is already
// CONFIRMED (an existing flow). They are there only during this separate
// flood, not while the packets/s are measured, and go again after it.
func (b *bench) newShare(ctx context.Context, s *sandbox, p pathSpec, d time.Duration) (float64, error) {
	ipt := iptablesCmd(b.o.iptables)
	port := fmt.Sprint(benchPort)
	specs := [][]string{
		{"-p", "udp", "--dport", port, "-m", "conntrack", "--ctstatus", "CONFIRMED", "-m", "comment", "--comment", "tapfw-bench: old flow"},
		{"-p", "udp", "--dport", port, "-m", "comment", "--comment", "tapfw-bench: all"},
	}
	for i, sp := range specs {
		if _, err := nsRun(ctx, s.host, nil, append([]string{ipt, "-w", "-t", "filter", "-I", p.hook, fmt.Sprint(i + 1)}, sp...)...); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, sp := range specs {
			_, _ = nsRun(context.Background(), s.host, nil, append([]string{ipt, "-w", "-t", "filter", "-D", p.hook}, sp...)...)
		}
	}()
	f, err := p.flow(s)
	if err != nil {
		return 0, err
	}
	defer f.close()
	if _, _, err := f.flood(d); err != nil {
		return 0, err
	}
	t, err := readTable(ctx, s.host, b.o.iptables, true)
	if err != nil {
		return 0, err
	}
	old, all := t.Counter(p.hook, 0), t.Counter(p.hook, 1)
	if all.Packets == 0 {
		return 0, fmt.Errorf("no packets counted at the top of %s", p.hook)
	}
	return 1 - float64(old.Packets)/float64(all.Packets), nil
}

// readTable reads the filter table in ns with iptables-save, with the
// rules' counters when counters is set.
func readTable(ctx context.Context, ns *testnet.NS, mode string, counters bool) (*netfilter.Table, error) {
	args := []string{iptablesCmd(mode) + "-save", "-t", "filter"}
	if counters {
		args = append(args, "-c")
	}
	out, err := nsRun(ctx, ns, nil, args...)
	if err != nil {
		return nil, err
	}
	return netfilter.ParseSave(out)
}

// readSets reads tapfw's ipsets in ns over netlink, as the plugin does.
func readSets(ns *testnet.NS) (map[string][]netip.Prefix, error) {
	var sets map[string][]netip.Prefix
	err := ns.Do(func() error {
		var err error
		sets, err = netfilter.NetlinkSets{}.List()
		return err
	})
	return sets, err
}

// RuleChecks are the rules a new packet of one path is checked against,
// per packet, from pkg/explain's walk through the installed table (the
// VMs' packet), cross-checked against the kernel's counters after Packets
// such packets.
type RuleChecks struct {
	Packets  uint64             `json:"packets"`  // packets sent for the cross-check
	Dispatch float64            `json:"dispatch"` // checks outside TFW-T-* and TFW-HOST-*
	TapChain float64            `json:"tapChains"`
	Host     float64            `json:"hostChains"`
	Total    float64            `json:"total"`
	PerChain map[string]float64 `json:"perChain"` // checks by chain
	Path     []string           `json:"path"`     // chains entered, in order
	// CountersChecked is how many of the rules the walk matched were
	// compared with the kernel's counters (each counted every packet).
	CountersChecked int `json:"countersChecked"`
}

func ruleChecks(c rulecheck.Checks, k uint64, compared int) *RuleChecks {
	r := &RuleChecks{Packets: k, Dispatch: float64(c.Dispatch), TapChain: float64(c.TapChains), Host: float64(c.Host),
		Total: float64(c.Total), PerChain: map[string]float64{}, Path: c.Path, CountersChecked: compared}
	for chain, n := range c.PerChain {
		r.PerChain[chain] = float64(n)
	}
	return r
}

// StaticChecks are one path's dispatch checks, walked by pkg/explain for
// every tap (rulecheck.Scan): the VMs' figure and the worst.
type StaticChecks struct {
	VM        int    `json:"vm"`        // the traffic VMs' path, to compare with RuleChecks
	Worst     int    `json:"worst"`     // the largest over all taps
	WorstTaps string `json:"worstTaps"` // which tap (or pair of taps) it is
	Taps      int    `json:"taps"`      // taps walked
	Error     string `json:"error,omitempty"`
}

// benchFlow is what the data plane's packets have in common, for explain.
var benchFlow = rulecheck.Flow{Host: netip.MustParseAddr(dpHostIP), SPort: flowPortLo, DPort: benchPort}

// countChecks walks the VMs' packet of p through the installed table with
// pkg/explain, and holds the walk against the kernel: it zeroes the
// counters of the firewalled sandbox, sends k packets on p slowly, and
// every rule the walk matched must have counted them all.
func (b *bench) countChecks(ctx context.Context, s *sandbox, p pathSpec, k int) (*RuleChecks, uint64, error) {
	f, err := p.flow(s)
	if err != nil {
		return nil, 0, err
	}
	defer f.close()
	rx := p.recv(s)
	before, err := udpCounter(rx)
	if err != nil {
		return nil, 0, err
	}
	if _, err := nsRun(ctx, s.host, nil, iptablesCmd(b.o.iptables), "-w", "-t", "filter", "-Z"); err != nil {
		return nil, 0, err
	}
	if err := f.trickle(k); err != nil {
		return nil, 0, err
	}
	time.Sleep(100 * time.Millisecond)
	t, err := readTable(ctx, s.host, b.o.iptables, true)
	if err != nil {
		return nil, 0, err
	}
	after, err := udpCounter(rx)
	if err != nil {
		return nil, 0, err
	}
	sets, err := readSets(s.host)
	if err != nil {
		return nil, 0, err
	}
	pkt := p.packet(s)
	res, err := rulecheck.Walk(t, sets, pkt)
	if err != nil {
		return nil, 0, err
	}
	compared, err := rulecheck.CrossCheck(res, t, uint64(k))
	if err != nil {
		return nil, 0, err
	}
	return ruleChecks(rulecheck.Split(pkt, res), uint64(k), compared), after - before, nil
}

func (b *bench) dataPlane(ctx context.Context, rep *Report) error {
	o := b.o
	fw, err := b.newSandbox(ctx, "firewall", "bdp")
	if err != nil {
		return err
	}
	defer fw.close()
	twin, err := b.newSandbox(ctx, "no firewall", "bnf")
	if err != nil {
		return err
	}
	defer twin.close()
	defer b.dropNS(fw.host, fw.a, fw.b, twin.host, twin.a, twin.b)
	lock := filepath.Join(b.tmp, "dp.lock")
	if err := twin.setPorts(ctx, 0, 1); err != nil {
		return err
	}

	installed := 0
	for _, n := range o.dpNs {
		if err := ctx.Err(); err != nil {
			return err
		}
		row := DPResult{N: n}
		// Put back the taps whose places the VMs took, add taps up to
		// N+2, and let the VMs take the places of the two worst-placed.
		if fw.vmsAdded {
			for _, t := range fw.vmTaps() {
				if _, err := callPlugin(ctx, o, fw.host, lock, "DEL", t); err != nil {
					return err
				}
			}
			for _, i := range fw.vmIdx {
				if _, err := callPlugin(ctx, o, fw.host, lock, "ADD", fillerTap(i, dpBridge)); err != nil {
					return err
				}
			}
			fw.vmsAdded = false
		}
		t0 := time.Now()
		if _, err := b.populate(ctx, fmt.Sprintf("data plane N=%d", n), fw.host, lock, installed, n+2,
			func(i int) tapSpec { return fillerTap(i, dpBridge) }); err != nil {
			return err
		}
		row.PopulateS = time.Since(t0).Seconds()
		installed = n + 2
		ia, ib, how := b.pickVMSlots(ctx, fw, installed)
		for _, i := range []int{ia, ib} {
			if _, err := callPlugin(ctx, o, fw.host, lock, "DEL", fillerTap(i, dpBridge)); err != nil {
				return err
			}
		}
		if err := fw.setPorts(ctx, ia, ib); err != nil {
			return err
		}
		for _, t := range fw.vmTaps() {
			if _, err := callPlugin(ctx, o, fw.host, lock, "ADD", t); err != nil {
				return err
			}
			row.VMs = append(row.VMs, t.Name)
		}
		fw.vmsAdded = true
		row.Placement = how
		// Short unreplied-UDP timeout: a source port comes round again only
		// after its entry has expired, so every packet is a new entry and
		// the table stays at most flowPorts entries per path.
		if err := fw.host.Sysctl("net.netfilter.nf_conntrack_udp_timeout", fmt.Sprint(o.ctTimeout)); err != nil {
			return err
		}
		if row.TableRules, err = countRules(ctx, fw.host, o.iptables); err != nil {
			return err
		}
		b.progress("data plane N=%d: VMs on %s and %s, %s (%d rules in the table); measuring %v per figure",
			n, fw.portA, fw.portB, how, row.TableRules, o.duration)

		for _, p := range paths {
			if err := ctx.Err(); err != nil {
				return err
			}
			pr := PathResult{Path: p.name, Desc: p.desc, CheckedTap: p.tap(fw)}
			if pr.NoFwPPS, pr.NoFwSentPPS, err = b.pps(twin, p, o.duration); err != nil {
				return fmt.Errorf("%s without firewall: %w", p.name, err)
			}
			if pr.FwPPS, pr.FwSentPPS, err = b.pps(fw, p, o.duration); err != nil {
				return fmt.Errorf("%s with firewall: %w", p.name, err)
			}
			if pr.NewFlowShare, err = b.newShare(ctx, fw, p, min(o.duration, time.Second)); err != nil {
				return fmt.Errorf("%s new-flow check: %w", p.name, err)
			}
			if pr.NoFwPPS > 0 {
				pr.Ratio = pr.FwPPS / pr.NoFwPPS
			}
			if pr.Checks, pr.CountRecv, err = b.countChecks(ctx, fw, p, o.count); err != nil {
				return fmt.Errorf("%s rule count: %w", p.name, err)
			}
			if pr.CountRecv != uint64(o.count) {
				b.progress("data plane N=%d %s: warning: %d of %d counted packets arrived", n, p.name, pr.CountRecv, o.count)
			}
			b.progress("data plane N=%d %s: %.0f pps with firewall, %.0f without (%.0f%%); %.1f rules checked before the tap's chain (%.1f in all); %.1f%% of packets made a new conntrack entry",
				n, p.name, pr.FwPPS, pr.NoFwPPS, 100*pr.Ratio, pr.Checks.Dispatch, pr.Checks.Total, 100*pr.NewFlowShare)
			row.Paths = append(row.Paths, pr)
		}
		if err := b.worstTaps(ctx, fw, installed, n, &row); err != nil {
			return err
		}
		if st, err := ctStats(fw.host); err == nil {
			row.CtCount = st["entries"]
		}
		rep.Data = append(rep.Data, row)
	}
	return nil
}

// pickVMSlots chooses the taps whose places the VMs take: of the n taps
// installed, the pair whose bridged packets are checked against the most
// rules before reaching their chains, walked with pkg/explain
// (rulecheck.Scan). The VMs' taps are then added after all others, under
// those names: last in a flat dispatch list, and in the same place in a
// structure that follows from the names. If the walk fails, the last two
// taps added.
func (b *bench) pickVMSlots(ctx context.Context, s *sandbox, n int) (int, int, string) {
	fallback := func(err error) (int, int, string) {
		b.progress("data plane: cannot walk the rules to find the worst-placed taps (%v); the VMs take the last two", err)
		return n - 2, n - 1, "in the places of the last two taps added"
	}
	scan, err := b.scan(ctx, s)
	if err != nil {
		return fallback(err)
	}
	ports := make([]rulecheck.Port, n)
	index := map[string]int{}
	for i := range ports {
		ports[i] = fillerTap(i, dpBridge).port()
		index[ports[i].Tap] = i
	}
	x, y, worst, err := scan.WorstPair(ports, ports[0])
	if err != nil {
		return fallback(err)
	}
	return index[x.Tap], index[y.Tap], fmt.Sprintf("in the places of the worst-placed pair %s -> %s (%d rules checked before the tap's chain), added last", x.Tap, y.Tap, worst)
}

// scan reads the installed table and sets of s for rulecheck.Scan.
func (b *bench) scan(ctx context.Context, s *sandbox) (*rulecheck.Scan, error) {
	t, err := readTable(ctx, s.host, b.o.iptables, false)
	if err != nil {
		return nil, err
	}
	sets, err := readSets(s.host)
	if err != nil {
		return nil, err
	}
	return rulecheck.NewScan(t, sets, benchFlow), nil
}

// worstTaps walks the packets of every tap (rulecheck.Scan) and records,
// per path, the VMs' figure and the worst one.
func (b *bench) worstTaps(ctx context.Context, s *sandbox, installed, n int, row *DPResult) error {
	scan, err := b.scan(ctx, s)
	if err != nil {
		return err
	}
	vms := s.vmTaps()
	ports := make([]rulecheck.Port, 0, installed)
	for i := 0; i < installed; i++ {
		switch i {
		case s.vmIdx[0]:
			ports = append(ports, vms[0].port())
		case s.vmIdx[1]:
			ports = append(ports, vms[1].port())
		default:
			ports = append(ports, fillerTap(i, dpBridge).port())
		}
	}
	t0 := time.Now()
	res, err := scan.Paths(ports, vms[0].port(), vms[1].port())
	if err != nil {
		// A walk explain cannot answer exactly: report it, keep the VMs' figures.
		b.progress("data plane N=%d: warning: walking the rules for every tap failed: %v", n, err)
		for i := range row.Paths {
			row.Paths[i].Static = &StaticChecks{Error: err.Error()}
		}
		return nil
	}
	for i := range row.Paths {
		pr := &row.Paths[i]
		w := res[pr.Path]
		pr.Static = &StaticChecks{VM: w.VM, Worst: w.Worst, WorstTaps: w.WorstTaps, Taps: w.Taps}
		if pr.Checks != nil && float64(w.VM) != pr.Checks.Dispatch {
			b.progress("data plane N=%d %s: warning: the VMs' packet is checked against %d dispatch rules with stand-in tap chains, %.1f in the installed table",
				n, pr.Path, w.VM, pr.Checks.Dispatch)
		}
		b.progress("data plane N=%d %s: worst of %d taps: %d rules checked before the tap's chain (%s)",
			n, pr.Path, w.Taps, w.Worst, w.WorstTaps)
	}
	if b.o.verbose {
		b.progress("data plane N=%d: walked %d taps in %v", n, len(ports), time.Since(t0).Round(time.Millisecond))
	}
	return nil
}
