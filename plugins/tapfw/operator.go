package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nft"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// The operator's commands: see what is installed and why, and clean up.
// They read the kernel of the namespace they run in; gc and flush take
// tapfw's lock like the plugin does.

// operator runs one operator command; it returns the exit status. Each
// command's flags function here (listFlags, showFlags, ...) defines its
// flags and returns what runs it; the table in commands.go names it.
type operator struct {
	p              *plugin
	stdin          io.Reader
	stdout, stderr io.Writer
}

func (o *operator) fail(format string, a ...any) int {
	fmt.Fprintf(o.stderr, "tapfw: "+format+"\n", a...)
	return 1
}

// snapshot reads both tables with counters and the ipsets, and the bridge
// of each tap that exists.
func (o *operator) snapshot() (*inspect.Snapshot, error) { return o.p.snapshot() }

func (o *operator) json(v any) int {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return o.fail("%v", err)
	}
	return 0
}

func jsonFlag(fs *flag.FlagSet) *bool { return fs.Bool("json", false, "print JSON") }

func listFlags(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	return func(o *operator, _ []string) int { return o.list(*asJSON) }
}

func (o *operator) list(asJSON bool) int {
	taps, err := o.taps()
	if err != nil {
		return o.fail("reading the installed firewall: %v", err)
	}
	if asJSON {
		if taps == nil {
			taps = []inspect.Tap{}
		}
		return o.json(taps)
	}
	fmt.Fprintf(o.stdout, "backend: %s\n", o.p.backendName)
	if err := inspect.WriteTaps(o.stdout, taps); err != nil {
		return o.fail("%v", err)
	}
	return 0
}

// taps lists the installed taps, from the backend in use.
func (o *operator) taps() ([]inspect.Tap, error) {
	if o.p.envErr != nil {
		return nil, o.p.envErr
	}
	if b, ok := o.p.be.(*nftablesBackend); ok {
		return b.taps(o.p.bridgeOf)
	}
	s, err := o.snapshot()
	if err != nil {
		return nil, err
	}
	return s.Taps(), nil
}

func showFlags(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	return func(o *operator, args []string) int { return o.show(args[0], *asJSON) }
}

func (o *operator) show(tap string, asJSON bool) int {
	if err := model.ValidateIfName(tap); err != nil {
		return o.fail("tap: %v", err)
	}
	t, rules, err := o.showTap(tap)
	if err != nil {
		return o.fail("reading the installed firewall: %v", err)
	}
	if len(rules) == 0 && len(t.IPs) == 0 {
		return o.fail("%s has no firewall installed", tap)
	}
	if asJSON {
		return o.json(struct {
			inspect.Tap
			RuleList []inspect.Rule `json:"ruleList"`
		}{t, rules})
	}
	if err := inspect.WriteRules(o.stdout, t, rules); err != nil {
		return o.fail("%v", err)
	}
	return 0
}

// showTap is one tap and its rules, from the backend in use.
func (o *operator) showTap(tap string) (inspect.Tap, []inspect.Rule, error) {
	if o.p.envErr != nil {
		return inspect.Tap{}, nil, o.p.envErr
	}
	if b, ok := o.p.be.(*nftablesBackend); ok {
		return b.showTap(tap, o.p.bridgeOf)
	}
	s, err := o.snapshot()
	if err != nil {
		return inspect.Tap{}, nil, err
	}
	t, rules := s.Show(tap)
	return t, rules, nil
}

// shown is every installed tap with its rules, from the backend in use.
func (o *operator) shown() ([]inspect.Shown, error) {
	if o.p.envErr != nil {
		return nil, o.p.envErr
	}
	if b, ok := o.p.be.(*nftablesBackend); ok {
		return b.shown(o.p.bridgeOf)
	}
	s, err := o.snapshot()
	if err != nil {
		return nil, err
	}
	return s.All(), nil
}

func metricsFlags(fs *flag.FlagSet) runFunc {
	path := fs.String("textfile", "", "write to `PATH` atomically (for node_exporter's textfile collector) instead of stdout")
	return func(o *operator, _ []string) int { return o.metrics(*path) }
}

func (o *operator) metrics(path string) int {
	s, err := o.shown()
	if err != nil {
		return o.fail("reading the installed firewall: %v", err)
	}
	if path == "" {
		if err := inspect.WriteMetrics(o.stdout, s); err != nil {
			return o.fail("%v", err)
		}
		return 0
	}
	// The collector must never read half a file: write aside, rename.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tapfw-metrics-*")
	if err != nil {
		return o.fail("writing metrics: %v", err)
	}
	defer os.Remove(tmp.Name())
	if err := inspect.WriteMetrics(tmp, s); err != nil {
		tmp.Close()
		return o.fail("writing metrics: %v", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return o.fail("writing metrics: %v", err)
	}
	if err := tmp.Close(); err != nil {
		return o.fail("writing metrics: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return o.fail("writing metrics: %v", err)
	}
	return 0
}

func renderFlags(fs *flag.FlagSet) runFunc {
	var add skel.CmdArgs
	fs.StringVar(&add.IfName, "ifname", os.Getenv("CNI_IFNAME"), "CNI_IFNAME of the ADD: the `TAP`")
	fs.StringVar(&add.ContainerID, "container-id", os.Getenv("CNI_CONTAINERID"), "CNI_CONTAINERID of the ADD: the container's or VM's `ID`")
	fs.StringVar(&add.Args, "args", os.Getenv("CNI_ARGS"), "CNI_ARGS of the ADD: `K=V;...`, pairs separated by semicolons")
	return func(o *operator, args []string) int { return o.render(add, args) }
}

// render prints what an ADD of a config (from stdin, or the file the
// one argument names) would change, changing nothing.
func (o *operator) render(add skel.CmdArgs, args []string) int {
	in := o.stdin
	if len(args) == 1 {
		f, err := os.Open(args[0])
		if err != nil {
			return o.fail("%v", err)
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return o.fail("reading the config: %v", err)
	}
	add.StdinData = data
	r, _, err := o.p.load(&add)
	if err != nil {
		return o.fail("%v", err)
	}
	if b, ok := o.p.be.(*nftablesBackend); ok {
		return o.renderNFT(b, r.Model)
	}
	plan, err := ruleset.Build(r.Model)
	if err != nil {
		return o.fail("%v", err)
	}
	changes, err := o.p.fw.Preview(plan)
	if err != nil {
		return o.fail("reading the installed firewall: %v", err)
	}
	o.printChanges(changes, "nothing to change", "ipset changes, then one iptables-restore --noflush")
	if plan.L2 != nil {
		fmt.Fprintf(o.stdout, "# layer 2 (nft, table bridge tapfw): the tap's elements, added where missing\n%s", plan.L2)
	}
	return 0
}

// flushPreviewNFT prints which of the nftables backend's tables flush
// would delete: everything of tapfw's is in them.
func (o *operator) flushPreviewNFT() int {
	tables, err := nft.Kernel{}.Tables()
	if err != nil {
		return o.fail("reading the installed firewall: %v", err)
	}
	if len(tables) == 0 {
		fmt.Fprintln(o.stdout, "# nftables: nothing of tapfw's")
	}
	for _, t := range tables {
		fmt.Fprintf(o.stdout, "# nftables: would delete table %s\n", t)
	}
	return 0
}

// renderNFT prints what an ADD would change with the nftables backend:
// one transaction, as nft commands.
func (o *operator) renderNFT(b *nftablesBackend, cfg model.Config) int {
	p, err := b.build(cfg)
	if err != nil {
		return o.fail("%v", err)
	}
	lines, err := b.k.Preview(p)
	if err != nil {
		return o.fail("reading the installed firewall: %v", err)
	}
	fmt.Fprintf(o.stdout, "# nftables (tables bridge and inet %s): one transaction\n%s\n", nft.Table, strings.Join(lines, "\n"))
	return 0
}

// printChanges prints each table's changes (iptables, then ip6tables)
// under a heading, or that there are none.
func (o *operator) printChanges(changes []*netfilter.Changes, none, heading string) {
	for i, c := range changes {
		name := "iptables"
		if i == 1 {
			name = "ip6tables"
		}
		if c.Empty() {
			fmt.Fprintf(o.stdout, "# %s: %s\n", name, none)
			continue
		}
		fmt.Fprintf(o.stdout, "# %s: %s\n%s", name, heading, c)
	}
}

func dryRunFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("dry-run", false, "print what would be removed, remove nothing")
}

func gcFlags(fs *flag.FlagSet) runFunc {
	dry := dryRunFlag(fs)
	return func(o *operator, _ []string) int { return o.gc(*dry) }
}

// gc removes the firewall of taps whose interface is gone.
func (o *operator) gc(dry bool) int {
	if o.p.envErr != nil {
		return o.fail("%v", o.p.envErr)
	}
	gone, err := o.p.be.RemoveGone(func(tap string) (bool, error) {
		_, err := netlink.LinkByName(tap)
		var nf netlink.LinkNotFoundError
		switch {
		case err == nil:
			return false, nil
		case errors.As(err, &nf):
			return true, nil
		}
		return false, fmt.Errorf("looking up %s: %w", tap, err)
	}, dry)
	if err != nil {
		return o.fail("gc: %v", err)
	}
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	for _, tap := range gone {
		fmt.Fprintf(o.stdout, "%s %s (interface gone)\n", verb, tap)
	}
	if len(gone) == 0 {
		fmt.Fprintln(o.stdout, "nothing to remove: every tap with a firewall exists")
	}
	return 0
}

func flushFlags(fs *flag.FlagSet) runFunc {
	dry := dryRunFlag(fs)
	return func(o *operator, _ []string) int { return o.flush(*dry) }
}

// flush removes everything tapfw made, and nothing else.
func (o *operator) flush(dry bool) int {
	if o.p.envErr != nil {
		return o.fail("%v", o.p.envErr)
	}
	if _, ok := o.p.be.(*nftablesBackend); ok && dry {
		return o.flushPreviewNFT()
	}
	if dry {
		changes, err := o.p.fw.FlushPreview()
		if err != nil {
			return o.fail("reading the installed firewall: %v", err)
		}
		o.printChanges(changes, "nothing of tapfw's", "would apply")
		fmt.Fprintf(o.stdout, "# nft: would delete table %s %s (if present)\n", ruleset.L2Family, ruleset.L2Table)
		return 0
	}
	if err := o.p.be.Flush(); err != nil {
		return o.fail("flushing: %v", err)
	}
	fmt.Fprintln(o.stdout, "removed every chain, rule, ipset and bridge table of tapfw's")
	return 0
}

func explainFlags(fs *flag.FlagSet) runFunc {
	var q query
	fs.StringVar(&q.tap, "tap", "", "the tap `TAP` (required)")
	fs.StringVar(&q.dir, "dir", "", "the direction, `in|out`: in is to the VM, out is from it (required)")
	fs.StringVar(&q.proto, "proto", "tcp", "the protocol `P`: tcp, udp, icmp, icmpv6 or a number")
	fs.StringVar(&q.src, "src", "", "the source address `A` (default: the tap's own for out)")
	fs.StringVar(&q.dst, "dst", "", "the destination address `A` (default: the tap's own for in)")
	fs.IntVar(&q.sport, "sport", 40000, "the source port `N`")
	fs.IntVar(&q.dport, "dport", 0, "the destination port `N`")
	fs.StringVar(&q.icmp, "icmp-type", "", "the ICMP type and code `T[/C]`, numeric")
	fs.StringVar(&q.state, "state", "NEW", "the conntrack state `S`: NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED")
	fs.IntVar(&q.hopLimit, "hop-limit", 64, "the IPv6 hop limit `N` (255: neighbour discovery)")
	fs.StringVar(&q.peer, "peer", "", "the other bridge `PORT`; default: the tap holding the other address, the host for a host address, else an uplink port \"uplink\"")
	asJSON := jsonFlag(fs)
	return func(o *operator, _ []string) int { return o.explain(q, *asJSON) }
}

// explain says which rule decides a packet to or from a tap.
func (o *operator) explain(q query, asJSON bool) int {
	if err := model.ValidateIfName(q.tap); err != nil {
		return o.fail("--tap: %v", err)
	}
	if q.dir != "in" && q.dir != "out" {
		return o.fail("--dir: %q is not in or out", q.dir)
	}
	res, pkt, err := o.explainPacket(q)
	if err != nil {
		return o.fail("%v", err)
	}
	if asJSON {
		return o.json(struct {
			Packet explain.Packet `json:"packet"`
			explain.Result
		}{pkt, res})
	}
	fmt.Fprint(o.stdout, explainText(pkt, res))
	return 0
}

// explainText is what tapfw explain prints: the packet, then the walk.
func explainText(pkt explain.Packet, res explain.Result) string {
	return describePacket(pkt) + "\n" + res.Text()
}

// explainPacket walks the query's packet through the installed
// ruleset of the backend in use.
func (o *operator) explainPacket(q query) (explain.Result, explain.Packet, error) {
	j, err := o.p.readJudge()
	if err != nil {
		return explain.Result{}, explain.Packet{}, fmt.Errorf("reading the installed firewall: %w", err)
	}
	return j.explain(q)
}

// query is what the operator asks explain about.
type query struct {
	tap, dir, proto, src, dst string
	sport, dport              int
	icmp, state, peer         string
	hopLimit                  int
}

func describePacket(p explain.Packet) string {
	ports := ""
	if p.DPort != 0 {
		ports = fmt.Sprintf(" %d -> %d", p.SPort, p.DPort)
	}
	where := fmt.Sprintf("in %s out %s", dash(p.InIface), dash(p.OutIface))
	if p.PhysIn != "" || p.PhysOut != "" {
		where += fmt.Sprintf(", ports %s -> %s", dash(p.PhysIn), dash(p.PhysOut))
	}
	return fmt.Sprintf("packet: IPv%d %s %s -> %s%s, state %s, hook %s, %s", p.Family, p.Proto, p.Src, p.Dst, ports, p.CtState, p.Hook, where)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// book says who owns an address (a tap, or the host) and a tap's MAC:
// what explain needs to place a packet on the bridge.
type book struct {
	owner func(netip.Addr) (tap string, host bool)
	mac   func(tap string) string
}

// snapshotBook reads owners from the iptables backend's address sets.
func snapshotBook(s *inspect.Snapshot) book {
	return book{
		owner: func(a netip.Addr) (tap string, host bool) {
			for name, entries := range s.Sets {
				f, ok := ruleset.FamilyOfSet(name)
				if !ok {
					continue
				}
				for _, p := range entries {
					if !p.Contains(a) {
						continue
					}
					if name == f.SetHost() {
						host = true
					} else if t, ok := f.TapOfSet(name); ok {
						tap = t
					}
				}
			}
			return tap, host
		},
		mac: func(tap string) string { t, _ := s.Show(tap); return t.MAC },
	}
}

// explain builds the packet as the kernel's hooks see it and walks it.
// tapPacket is the query's packet for the tap, which must have a
// firewall installed and be on a bridge.
func (q query) tapPacket(t inspect.Tap, installed bool) (explain.Packet, error) {
	if !installed {
		return explain.Packet{}, fmt.Errorf("%s has no firewall installed", q.tap)
	}
	if t.Bridge == "" {
		return explain.Packet{}, fmt.Errorf("%s is on no bridge", q.tap)
	}
	return q.packet(t)
}

// packet is the packet the query describes: its addresses (the tap's own
// by default), protocol, ports, ICMP type, state and hop limit, and, from
// the tap, its source MAC.
func (q query) packet(t inspect.Tap) (explain.Packet, error) {
	var pkt explain.Packet
	var err error
	if pkt.Src, pkt.Dst, err = q.addresses(t); err != nil {
		return pkt, err
	}
	pkt.Family = 4
	if pkt.Src.Is6() {
		pkt.Family = 6
	}
	pkt.Proto = strings.ToLower(q.proto)
	if pkt.Proto == "icmpv6" {
		pkt.Proto = model.ProtoICMPv6
	}
	pkt.SPort, pkt.DPort = uint16(q.sport), uint16(q.dport)
	pkt.ICMPType, pkt.ICMPCode = -1, -1
	if q.icmp != "" {
		typ, code, hasCode := strings.Cut(q.icmp, "/")
		if pkt.ICMPType, err = strconv.Atoi(typ); err != nil {
			return pkt, fmt.Errorf("--icmp-type: %q is not a number", q.icmp)
		}
		pkt.ICMPCode = 0
		if hasCode {
			if pkt.ICMPCode, err = strconv.Atoi(code); err != nil {
				return pkt, fmt.Errorf("--icmp-type: %q has no numeric code", q.icmp)
			}
		}
	}
	pkt.CtState = strings.ToUpper(q.state)
	pkt.HopLimit = q.hopLimit
	if t.MAC != "" && q.dir == "out" {
		pkt.SrcMAC, _ = net.ParseMAC(t.MAC)
	}
	return pkt, nil
}

// addresses are the packet's source and destination: the tap's own
// address of the other one's family where the query leaves it out.
func (q query) addresses(t inspect.Tap) (src, dst netip.Addr, err error) {
	parse := func(what, v string) (netip.Addr, error) {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return a, fmt.Errorf("--%s: %q is not an address", what, v)
		}
		return a.Unmap(), nil
	}
	own := func(other string) (string, error) {
		v6 := strings.Contains(other, ":")
		for _, ip := range t.IPs {
			if strings.Contains(ip, "/") { // a network routed to the VM
				continue
			}
			if a, err := netip.ParseAddr(ip); err == nil && a.Is6() == v6 && !a.IsLinkLocalUnicast() {
				return ip, nil
			}
		}
		return "", fmt.Errorf("%s has no address of that family: give --src and --dst", q.tap)
	}
	if q.dir == "out" && q.src == "" {
		if q.src, err = own(q.dst); err != nil {
			return src, dst, err
		}
	}
	if q.dir == "in" && q.dst == "" {
		if q.dst, err = own(q.src); err != nil {
			return src, dst, err
		}
	}
	if src, err = parse("src", q.src); err != nil {
		return src, dst, err
	}
	if dst, err = parse("dst", q.dst); err != nil {
		return src, dst, err
	}
	if src.Is4() != dst.Is4() {
		return src, dst, errors.New("--src and --dst are of different families")
	}
	return src, dst, nil
}

// place puts the packet where the kernel sees it: bridged between the
// tap and its peer (another tap, found by address, or --peer, else an
// uplink), to the host (INPUT) or from it (OUTPUT).
func (q query) place(b book, t inspect.Tap, pkt *explain.Packet) {
	other := pkt.Dst
	if q.dir == "in" {
		other = pkt.Src
	}
	peerTap, isHost := b.owner(other)
	peer := q.peer
	if peer == "" {
		peer = peerTap
	}
	if peer == "" && !isHost {
		peer = "uplink"
	}
	if peer != "" {
		isHost = false
	}
	if q.dir == "in" && peerTap != "" && peer == peerTap {
		// The sending tap's OUT chain checks its MAC.
		if mac := b.mac(peerTap); mac != "" {
			pkt.SrcMAC, _ = net.ParseMAC(mac)
		}
	}
	br := t.Bridge
	switch {
	case q.dir == "out" && isHost: // from the VM to the host
		pkt.Hook, pkt.InIface, pkt.PhysIn = "INPUT", br, q.tap
	case q.dir == "out":
		pkt.Hook, pkt.InIface, pkt.OutIface, pkt.PhysIn, pkt.PhysOut, pkt.Bridged = "FORWARD", br, br, q.tap, peer, true
	case isHost: // from the host to the VM
		pkt.Hook, pkt.OutIface = "OUTPUT", br
	default:
		pkt.Hook, pkt.InIface, pkt.OutIface, pkt.PhysIn, pkt.PhysOut, pkt.Bridged = "FORWARD", br, br, peer, q.tap, true
	}
}
