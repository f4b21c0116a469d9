package report

import (
	"fmt"
	"io"
	"strings"
)

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func kpps(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.1fk", v/1000)
}

func mib(kb int64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

func ratio(plugin, base float64) string {
	switch {
	case base <= 0 || plugin <= 0:
		return "-"
	case plugin <= base:
		return fmt.Sprintf("%.3f (%.1f× faster)", plugin/base, base/plugin)
	default:
		return fmt.Sprintf("%.3f (%.1f× slower)", plugin/base, plugin/base)
	}
}

// md writes formatted text.
type md struct{ w io.Writer }

func (m md) p(format string, a ...any) { fmt.Fprintf(m.w, format, a...) }

// WriteMarkdown prints the tables, ready for docs/performance.md: the
// targets first (every backend, ratios before absolute figures), then
// each backend's tables.
func WriteMarkdown(w io.Writer, rep *Report) {
	m := md{w}
	m.header(rep)
	writeTargets(w, rep)
	for i := range rep.Backends {
		b := &rep.Backends[i]
		if len(b.Control) > 0 {
			m.control(rep, b)
			m.process(rep, b)
			m.floor(b)
			m.apply(rep, b)
			m.console(rep, b)
		}
		if len(b.Data) > 0 {
			m.data(rep, b)
			m.established(rep, b)
		}
	}
	m.p("\n")
}

func (m md) header(rep *Report) {
	mc := rep.Machine
	m.p("\n### Benchmark results\n\n")
	m.p("`%s`, %s: %d CPUs (%s), %d MiB, Linux %s, %s.", rep.Command, rep.Date, mc.Nproc, mc.CPU, mc.MemMB, mc.Kernel, mc.Iptables)
	var names []string
	for _, b := range rep.Backends {
		names = append(names, b.Backend)
	}
	switch {
	case len(names) == 1:
		m.p(" Backend: %s.", names[0])
	case len(names) > 1:
		m.p(" Backends: %s (one after the other, each in sandboxes of its own).", strings.Join(names, ", "))
	}
	m.p("\n")
	if rep.Incomplete != "" {
		m.p("\n**Incomplete run** (%s): the tables hold what was measured before.\n", rep.Incomplete)
	}
}

// baselineOf is the baseline row at N for backend b's table: its own, or
// the one another backend's run measured.
func baselineOf(rep *Report, b *BackendRun, r CPResult) *CPResult {
	if r.BaselineAdd != nil {
		return &r
	}
	return rep.baseline(r.N)
}

func hasBaseline(rep *Report, b *BackendRun) bool {
	for _, r := range b.Control {
		if baselineOf(rep, b, r) != nil {
			return true
		}
	}
	return false
}

// control is the latency table and the growth over N.
func (m md) control(rep *Report, b *BackendRun) {
	pr := rep.Params
	m.p("\n#### %s: control plane: one call, whole process, wall time in ms (%d ADD and %d DEL at each N)\n\n", b.Backend, pr.Calls, pr.Calls)
	m.p("Taps spread over %d bridges, each with %d+%d user rules, MAC and IP anti-spoofing, a host section and a named ipset. ", pr.Bridges, pr.UserRulesIn, pr.UserRulesOut)
	m.p("Baseline: the same rule set in the flat layout, one go-iptables call per rule as the CNI firewall plugin does it: ADD appends the tap's %d rules and checks %d shared ones with `AppendUnique` (iptables -C, then -A), DEL deletes the tap's rules one by one (-D).", pr.BaselineOwn, pr.BaselineShared)
	if len(b.Control) > 0 && b.Control[0].BaselineAdd == nil && hasBaseline(rep, b) {
		m.p(" The baseline columns are the same run's, measured once beside the other backend.")
	}
	m.p("\n\n")
	hasBase := hasBaseline(rep, b)
	if hasBase {
		m.p("| taps N | ADD p50 | ADD p95 | DEL p50 | DEL p95 | baseline ADD p50 | p95 | baseline DEL p50 | p95 | ADD plugin/baseline | DEL plugin/baseline |\n")
		m.p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	} else {
		m.p("| taps N | ADD p50 | ADD p95 | DEL p50 | DEL p95 |\n|---:|---:|---:|---:|---:|\n")
	}
	for _, r := range b.Control {
		m.p("| %d | %s | %s | %s | %s |", r.N, ms(r.PluginAdd.P50), ms(r.PluginAdd.P95), ms(r.PluginDel.P50), ms(r.PluginDel.P95))
		if bl := baselineOf(rep, b, r); hasBase && bl != nil {
			m.p(" %s | %s | %s | %s | %s | %s |", ms(bl.BaselineAdd.P50), ms(bl.BaselineAdd.P95), ms(bl.BaselineDel.P50), ms(bl.BaselineDel.P95),
				ratio(r.PluginAdd.P50, bl.BaselineAdd.P50), ratio(r.PluginDel.P50, bl.BaselineDel.P50))
		} else if hasBase {
			m.p(" | | | | | |")
		}
		m.p("\n")
	}
	if n := len(b.Control); n >= 2 {
		first, last := b.Control[0], b.Control[n-1]
		m.p("\nGrowth from N=%d to N=%d: ADD p50 ×%.2f, DEL p50 ×%.2f.\n", first.N, last.N,
			last.PluginAdd.P50/first.PluginAdd.P50, last.PluginDel.P50/first.PluginDel.P50)
	}
}

// process is the plugin process's CPU time and memory.
func (m md) process(rep *Report, b *BackendRun) {
	hasBase := hasBaseline(rep, b)
	m.p("\n#### %s: plugin process per call (CPU = user+system of the plugin and the tools it runs; %s)\n\n", b.Backend, rssMeaning(b))
	m.p("| taps N | rules in table | ADD CPU p50 ms | DEL CPU p50 ms | ADD RSS p50 MiB | peak RSS MiB |")
	if hasBase {
		m.p(" baseline ADD CPU p50 ms | baseline DEL CPU p50 ms |")
	}
	m.p("\n|---:|---:|---:|---:|---:|---:|")
	if hasBase {
		m.p("---:|---:|")
	}
	m.p("\n")
	for _, r := range b.Control {
		peak := max(r.PluginAdd.RSSMaxKB, r.PluginDel.RSSMaxKB)
		m.p("| %d | %d | %s | %s | %s | %s |", r.N, r.PluginRules, ms(r.PluginAdd.CPUP50), ms(r.PluginDel.CPUP50), mib(r.PluginAdd.RSSP50KB), mib(peak))
		if bl := baselineOf(rep, b, r); hasBase && bl != nil {
			m.p(" %s | %s |", ms(bl.BaselineAdd.CPUP50), ms(bl.BaselineDel.CPUP50))
		} else if hasBase {
			m.p(" | |")
		}
		m.p("\n")
	}
}

// floor is the kernel's share: one-rule appends and deletes.
func (m md) floor(b *BackendRun) {
	hasFloor, nft, hasCommits := false, false, false
	for _, r := range b.Control {
		hasFloor = hasFloor || r.FloorAdd != nil
		nft = nft || r.FloorTool == "nft"
		hasCommits = hasCommits || r.CommitJump != nil
	}
	if !hasFloor {
		return
	}
	add, del := "one-rule -A p50", "one-rule -D p50"
	if nft {
		m.p("\n#### %s: the kernel's share: one nft call changing one rule in tapfw's bridge table\n\n", b.Backend)
		m.p("`nft add rule` of a single rule to a chain nothing jumps to in `table bridge tapfw`, and `nft flush chain` of it, in the plugin's namespace at N taps: every transaction that adds a rule validates what the table's base chains reach. ")
		m.p("The nft tool reads the whole ruleset into its cache before it commits, so its figures grow faster than the kernel's commit; the floor of tapfw's ADD is the commit of its dispatch element (the second-last column), and \"ADD minus dispatch commit\" is what tapfw adds to it (its process, netlink reads, the rest of its transaction).\n\n")
		add, del = "one-rule add p50", "one-rule flush p50"
	} else {
		m.p("\n#### %s: the kernel's share: one iptables call changing one rule in the same table\n\n", b.Backend)
		m.p("`iptables -A` and `-D` of a single rule in a chain nothing jumps to, in the plugin's namespace at N taps. ")
		m.p("Every nf_tables transaction that adds a rule re-validates every rule reachable from each base chain, so an append costs in proportion to the whole table, whoever makes it; deleting rules needs no validation. ")
		m.p("The plugin's ADD cannot be faster than this floor; \"ADD minus -A floor\" is what tapfw adds (its own process, netlink reads, set changes and iptables-restore).\n\n")
	}
	commits := ""
	if hasCommits {
		m.p("The last two columns are the kernel's commit alone of one element added over netlink, as the plugin adds them: to the dispatch map `tfw-in`, jumping to a chain (then the kernel walks every element of the verdict maps the base chains use, validating each chain they reach once, so the commit grows with the taps), and to the plain set `tfw-ports` (no validation).\n\n")
		commits = " dispatch element commit p50 | plain element commit p50 |"
	}
	minus := "ADD minus -A floor"
	if nft {
		minus = "ADD minus dispatch commit"
	}
	m.p("| taps N | rules in table | %s | %s | ADD p50 | %s | DEL p50 |%s\n|---:|---:|---:|---:|---:|---:|---:|%s\n",
		add, del, minus, commits, strings.Repeat("---:|", strings.Count(commits, "|")))
	for _, r := range b.Control {
		if r.FloorAdd == nil {
			continue
		}
		m.p("| %d | %d | %s | %s | %s | %s | %s |", r.N, r.PluginRules, ms(r.FloorAdd.P50), ms(r.FloorDel.P50),
			ms(r.PluginAdd.P50), addOverFloor(r, nft), ms(r.PluginDel.P50))
		if hasCommits {
			m.p(" %s | %s |", msOf(r.CommitJump), msOf(r.CommitPlain))
		}
		m.p("\n")
	}
}

// apply is tapfw apply's latency beside an ADD's at the same N.
func (m md) apply(rep *Report, b *BackendRun) {
	var rows []CPResult
	for _, r := range b.Control {
		if r.ApplyChange != nil && r.ApplySame != nil {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	m.p("\n#### %s: tapfw apply at N taps: whole process, wall time in ms (%d runs of each)\n\n", b.Backend, rep.Params.Calls)
	m.p("A run that changes the named set every tap's host section uses (one entry in or out, changed in place; then the connections of every tap are judged against the new rules), and one that finds nothing to change (a path unit started for nothing); beside the ADD of one tap at the same N.\n\n")
	m.p("| taps N | apply, set changed p50 | p95 | apply, nothing to change p50 | p95 | ADD p50 | changed apply/ADD |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		m.p("| %d | %s | %s | %s | %s | %s | %s |\n", r.N, ms(r.ApplyChange.P50), ms(r.ApplyChange.P95), ms(r.ApplySame.P50), ms(r.ApplySame.P95),
			ms(r.PluginAdd.P50), ratio(r.ApplyChange.P50, r.PluginAdd.P50))
	}
}

// console is the web console's requests at N taps beside the CLI's.
func (m md) console(rep *Report, b *BackendRun) {
	var rows []CPResult
	for _, r := range b.Control {
		if r.ConsoleTaps != nil && r.ConsolePage != nil && r.ConsolePut != nil && r.ListCLI != nil {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	m.p("\n#### %s: the web console (tapfw ui) at N taps: request to last byte, wall time in ms (%d of each)\n\n", b.Backend, rep.Params.Calls)
	m.p("What its list of the taps costs (GET /api/taps, which reads them) beside `tapfw list --json` (a process each time); the taps page right after it, in the same second, which renders that read again (every request within a second shares one); and an edit (a PUT of the named set every tap shares: the file checked, written and applied) beside `tapfw apply` changing the set.\n\n")
	m.p("| taps N | GET /api/taps p50 | taps page, shared read p50 | tapfw list --json p50 | PUT a set p50 | p95 | tapfw apply p50 |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		m.p("| %d | %s | %s | %s | %s | %s | %s |\n", r.N, ms(r.ConsoleTaps.P50), ms(r.ConsolePage.P50), ms(r.ListCLI.P50),
			ms(r.ConsolePut.P50), ms(r.ConsolePut.P95), msOf(r.ApplyChange))
	}
}

// addOverFloor is the plugin's ADD p50 less the kernel's floor under it:
// the one-rule append for iptables, the dispatch element's commit for
// nftables (blank when that was not measured).
func addOverFloor(r CPResult, nft bool) string {
	floor := r.FloorAdd
	if nft {
		floor = r.CommitJump
	}
	if floor == nil {
		return ""
	}
	return ms(r.PluginAdd.P50 - floor.P50)
}

// rssMeaning says where the RSS columns come from: the plugin's own
// report of its peak, or (runs before it reported one) the rusage's,
// which counts the benchmark's memory too.
func rssMeaning(b *BackendRun) string {
	for _, r := range b.Control {
		if !r.PluginAdd.RSSReported || !r.PluginDel.RSSReported {
			return "RSS = wait4's peak, an upper bound: Go starts the plugin with vfork, so it counts the benchmark's own memory too"
		}
	}
	return "RSS = the plugin's own peak, VmHWM, as it reports it"
}

// msOf is a p50 in ms, or blank when not measured.
func msOf(s *CallStats) string {
	if s == nil {
		return ""
	}
	return ms(s.P50)
}

// data is the packets/s and rules-checked table, and the worst taps.
func (m md) data(rep *Report, b *BackendRun) {
	pr := rep.Params
	m.p("\n#### %s: data plane: one-way UDP, every packet a new flow (%d-byte frames, %.0f s per figure)\n\n", b.Backend, pr.FrameBytes, pr.DurationS)
	if b.Backend == "nftables" {
		m.p("N managed taps on the VMs' bridge besides the two VMs, whose taps are the last two added. Packets/s received by the VM or the host. ")
		m.p("Rules checked = rules a new packet is evaluated against outside the taps' profile, log and group chains (tfw-pi*, tfw-po*, tfw-l*, tfw-g*) and the host firewall (tfw-h*), the layer-2 checks of the bridge table (tfw-pre) included: ")
		m.p("the kernel's own trace (`meta nftrace`, `nft -a monitor trace`) of %d packets, in each chain up to the last rule that matched (its place in the chain, read from the installed ruleset) or the whole chain when the packet fell off its end. ", tracedPackets(b))
		m.p("Dispatch is a verdict-map lookup, the same for every tap, so no tap is placed worse than the VMs' (\"worst tap\" in the targets is the VMs' figure).\n\n")
	} else {
		m.p("N managed taps on the VMs' bridge besides the two VMs, whose taps take the names of the worst-placed pair of taps and are added last. Packets/s received by the VM or the host. ")
		m.p("Rules checked = rule checks per new packet outside the taps' own chains (TFW-T-*) and the host firewall (TFW-HOST-*): ")
		m.p("the installed rules walked by pkg/explain for the VMs' taps (the walk held against the kernel's counters after %d packets) and for every tap, to find the worst-placed.\n\n", pr.CountPackets)
	}
	floor := false
	for _, r := range b.Data {
		for _, x := range r.Paths {
			floor = floor || x.FloorPPS > 0
		}
	}
	floorCols, floorSep := "", ""
	if floor {
		m.p("Conntrack floor: the same path through a host whose only firewall is conntrack and an accept of the bench's port (the established traffic's floor sandbox): what a new flow costs any stateful firewall here.\n\n")
		floorCols, floorSep = " conntrack floor | with tapfw over floor |", "---:|---:|"
	}
	m.p("| taps N | path | with tapfw | no firewall | ratio |%s rules checked, VMs' taps | rules checked, worst tap | all rules checked, VMs | new conntrack entry |\n", floorCols)
	m.p("|---:|---|---:|---:|---:|%s---:|---:|---:|---:|\n", floorSep)
	for _, r := range b.Data {
		for _, x := range r.Paths {
			rc, all, worst := "-", "-", "-"
			if x.Checks != nil {
				rc, all = fmt.Sprintf("%.1f", x.Checks.Dispatch), fmt.Sprintf("%.1f", x.Checks.Total)
			}
			if x.Static != nil && x.Static.Error == "" {
				worst = fmt.Sprint(x.Static.Worst)
			}
			m.p("| %d | %s | %s | %s | %.0f%% |", r.N, x.Desc, kpps(x.FwPPS), kpps(x.NoFwPPS), 100*x.Ratio)
			if floor {
				m.p(" %s | %s |", kpps(x.FloorPPS), pct(x.FwPPS, x.FloorPPS))
			}
			m.p(" %s | %s | %s | %.1f%% |\n", rc, worst, all, 100*x.NewFlowShare)
		}
	}
	last := b.Data[len(b.Data)-1]
	var parts []string
	for _, x := range last.Paths {
		if x.Static != nil && x.Static.Error == "" {
			parts = append(parts, fmt.Sprintf("%s %s", x.Path, x.Static.WorstTaps))
		}
	}
	if len(parts) > 0 {
		m.p("\nWorst-placed taps at N=%d: %s.\n", last.N, strings.Join(parts, "; "))
	}
}

// tracedPackets is how many packets a run's rule counts followed.
func tracedPackets(b *BackendRun) uint64 {
	for _, r := range b.Data {
		for _, x := range r.Paths {
			if x.Checks != nil {
				return x.Checks.Packets
			}
		}
	}
	return 0
}

func gbps(v float64) string { return fmt.Sprintf("%.2f", v/1e9) }

func pct(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}

// established is one TCP connection VM to VM, through tapfw and the floor.
func (m md) established(rep *Report, b *BackendRun) {
	var rows []DPResult
	for _, r := range b.Data {
		if r.Established != nil {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	pr := rep.Params
	m.p("\n#### %s: established traffic: one TCP connection VM to VM (iperf3, one stream, %.0f s a run, median of %d runs)\n\n", b.Backend, pr.IperfSeconds, pr.IperfRuns)
	m.p("Bulk: `iperf3 -c` received Gbit/s. Small writes: `iperf3 -l %d -N` (TCP_NODELAY), TCP segments/s the server's namespace received and writes/s the client made. ", pr.SmallWriteBytes)
	m.p("Floor: the same two-namespace path, its host's only firewall a forward chain of two rules, `ct state established,related accept` and an accept of the iperf3 port (policy drop), no tapfw: what any stateful firewall pays.\n\n")
	m.p("| taps N | bulk Gbit/s, tapfw | floor | ratio | small writes seg/s, tapfw | floor | ratio | writes/s, tapfw | floor |\n")
	m.p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		e := r.Established
		m.p("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.N, gbps(e.Fw.BulkBps), gbps(e.Floor.BulkBps), pct(e.Fw.BulkBps, e.Floor.BulkBps),
			kpps(e.Fw.SmallPps), kpps(e.Floor.SmallPps), pct(e.Fw.SmallPps, e.Floor.SmallPps), kpps(e.Fw.SmallWps), kpps(e.Floor.SmallWps))
	}
}
