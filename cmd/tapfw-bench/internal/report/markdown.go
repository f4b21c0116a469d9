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

// WriteMarkdown prints the tables, ready for docs/performance.md.
func WriteMarkdown(w io.Writer, rep *Report) {
	m := md{w}
	m.header(rep)
	if len(rep.Control) > 0 {
		m.control(rep)
		m.process(rep)
		m.floor(rep)
	}
	if len(rep.Data) > 0 {
		m.data(rep)
	}
	writeTargets(w, rep)
	m.p("\n")
}

func (m md) header(rep *Report) {
	mc := rep.Machine
	m.p("\n### Benchmark results\n\n")
	m.p("`%s`, %s: %d CPUs (%s), %d MiB, Linux %s, %s.\n", rep.Command, rep.Date, mc.Nproc, mc.CPU, mc.MemMB, mc.Kernel, mc.Iptables)
	if rep.Incomplete != "" {
		m.p("\n**Incomplete run** (%s): the tables hold what was measured before.\n", rep.Incomplete)
	}
}

func hasBaseline(rep *Report) bool {
	for _, r := range rep.Control {
		if r.BaselineAdd != nil {
			return true
		}
	}
	return false
}

// control is the latency table and the growth over N.
func (m md) control(rep *Report) {
	pr := rep.Params
	m.p("\n#### Control plane: one call, whole process, wall time in ms (%d ADD and %d DEL at each N)\n\n", pr.Calls, pr.Calls)
	m.p("Taps spread over %d bridges, each with %d+%d user rules, MAC and IP anti-spoofing, a host section and a named ipset. ", pr.Bridges, pr.UserRulesIn, pr.UserRulesOut)
	m.p("Baseline: the same rule set in the flat layout, one go-iptables call per rule as the CNI firewall plugin does it: ADD appends the tap's %d rules and checks %d shared ones with `AppendUnique` (iptables -C, then -A), DEL deletes the tap's rules one by one (-D).\n\n", pr.BaselineOwn, pr.BaselineShared)
	hasBase := hasBaseline(rep)
	if hasBase {
		m.p("| taps N | ADD p50 | ADD p95 | DEL p50 | DEL p95 | baseline ADD p50 | p95 | baseline DEL p50 | p95 | ADD plugin/baseline | DEL plugin/baseline |\n")
		m.p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	} else {
		m.p("| taps N | ADD p50 | ADD p95 | DEL p50 | DEL p95 |\n|---:|---:|---:|---:|---:|\n")
	}
	for _, r := range rep.Control {
		m.p("| %d | %s | %s | %s | %s |", r.N, ms(r.PluginAdd.P50), ms(r.PluginAdd.P95), ms(r.PluginDel.P50), ms(r.PluginDel.P95))
		if hasBase && r.BaselineAdd != nil {
			m.p(" %s | %s | %s | %s | %s | %s |", ms(r.BaselineAdd.P50), ms(r.BaselineAdd.P95), ms(r.BaselineDel.P50), ms(r.BaselineDel.P95),
				ratio(r.PluginAdd.P50, r.BaselineAdd.P50), ratio(r.PluginDel.P50, r.BaselineDel.P50))
		} else if hasBase {
			m.p(" | | | | | |")
		}
		m.p("\n")
	}
	if n := len(rep.Control); n >= 2 {
		first, last := rep.Control[0], rep.Control[n-1]
		m.p("\nGrowth from N=%d to N=%d: ADD p50 ×%.2f, DEL p50 ×%.2f.\n", first.N, last.N,
			last.PluginAdd.P50/first.PluginAdd.P50, last.PluginDel.P50/first.PluginDel.P50)
	}
}

// process is the plugin process's CPU time and memory.
func (m md) process(rep *Report) {
	hasBase := hasBaseline(rep)
	m.p("\n#### Plugin process per call (CPU = user+system of the plugin and the tools it runs; RSS = the largest of them)\n\n")
	m.p("| taps N | rules in table | ADD CPU p50 ms | DEL CPU p50 ms | ADD RSS p50 MiB | peak RSS MiB |")
	if hasBase {
		m.p(" baseline ADD CPU p50 ms | baseline DEL CPU p50 ms |")
	}
	m.p("\n|---:|---:|---:|---:|---:|---:|")
	if hasBase {
		m.p("---:|---:|")
	}
	m.p("\n")
	for _, r := range rep.Control {
		peak := max(r.PluginAdd.RSSMaxKB, r.PluginDel.RSSMaxKB)
		m.p("| %d | %d | %s | %s | %s | %s |", r.N, r.PluginRules, ms(r.PluginAdd.CPUP50), ms(r.PluginDel.CPUP50), mib(r.PluginAdd.RSSP50KB), mib(peak))
		if hasBase && r.BaselineAdd != nil {
			m.p(" %s | %s |", ms(r.BaselineAdd.CPUP50), ms(r.BaselineDel.CPUP50))
		} else if hasBase {
			m.p(" | |")
		}
		m.p("\n")
	}
}

// floor is the kernel's share: one-rule appends and deletes.
func (m md) floor(rep *Report) {
	hasFloor := false
	for _, r := range rep.Control {
		hasFloor = hasFloor || r.FloorAdd != nil
	}
	if !hasFloor {
		return
	}
	m.p("\n#### The kernel's share: one iptables call changing one rule in the same table\n\n")
	m.p("`iptables -A` and `-D` of a single rule in a chain nothing jumps to, in the plugin's namespace at N taps. ")
	m.p("Every nf_tables transaction that adds a rule re-validates every rule reachable from each base chain, so an append costs in proportion to the whole table, whoever makes it; deleting rules needs no validation. ")
	m.p("The plugin's ADD cannot be faster than this floor; \"ADD minus -A floor\" is what tapfw adds (its own process, netlink reads, set changes and iptables-restore).\n\n")
	m.p("| taps N | rules in table | one-rule -A p50 | one-rule -D p50 | ADD p50 | ADD minus -A floor | DEL p50 |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Control {
		if r.FloorAdd == nil {
			continue
		}
		m.p("| %d | %d | %s | %s | %s | %s | %s |\n", r.N, r.PluginRules, ms(r.FloorAdd.P50), ms(r.FloorDel.P50),
			ms(r.PluginAdd.P50), ms(r.PluginAdd.P50-r.FloorAdd.P50), ms(r.PluginDel.P50))
	}
}

// data is the packets/s and rules-checked table, and the worst taps.
func (m md) data(rep *Report) {
	pr := rep.Params
	m.p("\n#### Data plane: one-way UDP, every packet a new flow (%d-byte frames, %.0f s per figure)\n\n", pr.FrameBytes, pr.DurationS)
	m.p("N managed taps on the VMs' bridge besides the two VMs, whose taps take the names of the worst-placed pair of taps and are added last. Packets/s received by the VM or the host. ")
	m.p("Rules checked = rule checks per new packet outside the taps' own chains (TFW-T-*) and the host firewall (TFW-HOST-*): ")
	m.p("the installed rules walked by pkg/explain for the VMs' taps (the walk held against the kernel's counters after %d packets) and for every tap, to find the worst-placed.\n\n", pr.CountPackets)
	m.p("| taps N | path | with tapfw | no firewall | ratio | rules checked, VMs' taps | rules checked, worst tap | all rules checked, VMs | new conntrack entry |\n")
	m.p("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Data {
		for _, x := range r.Paths {
			rc, all, worst := "-", "-", "-"
			if x.Checks != nil {
				rc, all = fmt.Sprintf("%.1f", x.Checks.Dispatch), fmt.Sprintf("%.1f", x.Checks.Total)
			}
			if x.Static != nil && x.Static.Error == "" {
				worst = fmt.Sprint(x.Static.Worst)
			}
			m.p("| %d | %s | %s | %s | %.0f%% | %s | %s | %s | %.1f%% |\n", r.N, x.Desc, kpps(x.FwPPS), kpps(x.NoFwPPS), 100*x.Ratio, rc, worst, all, 100*x.NewFlowShare)
		}
	}
	last := rep.Data[len(rep.Data)-1]
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

type target struct{ what, target, got, ok string }

func met(b bool) string {
	if b {
		return "met"
	}
	return "**missed**"
}

// writeTargets compares the run with the project's performance targets,
// between the smallest and the largest N measured.
func writeTargets(w io.Writer, rep *Report) {
	rows := append(controlTargets(rep), dataTargets(rep)...)
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n#### Targets\n\n| figure | target | measured | |\n|---|---:|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.what, r.target, r.got, r.ok)
	}
}

func controlTargets(rep *Report) []target {
	n := len(rep.Control)
	if n == 0 {
		return nil
	}
	var rows []target
	first, last := rep.Control[0], rep.Control[n-1]
	for _, c := range []struct {
		name        string
		plugin, pl0 *CallStats
		base        *CallStats
	}{{"ADD", last.PluginAdd, first.PluginAdd, last.BaselineAdd}, {"DEL", last.PluginDel, first.PluginDel, last.BaselineDel}} {
		rows = append(rows, target{fmt.Sprintf("%s p50 at N=%d", c.name, last.N), "at most 15 ms", ms(c.plugin.P50) + " ms", met(c.plugin.P50 <= 15)})
		if n > 1 {
			g := c.plugin.P50 / c.pl0.P50
			rows = append(rows, target{fmt.Sprintf("%s p50 at N=%d over N=%d", c.name, last.N, first.N), "at most 2", fmt.Sprintf("%.2f", g), met(g <= 2)})
		}
		if c.base != nil {
			f := c.base.P50 / c.plugin.P50
			rows = append(rows, target{fmt.Sprintf("%s baseline p50 over tapfw p50 at N=%d", c.name, last.N), "at least 10", fmt.Sprintf("%.1f", f), met(f >= 10)})
		}
	}
	return rows
}

func dataTargets(rep *Report) []target {
	n := len(rep.Data)
	if n == 0 {
		return nil
	}
	var rows []target
	first, last := rep.Data[0], rep.Data[n-1]
	for i, x := range last.Paths {
		if n > 1 && i < len(first.Paths) && first.Paths[i].FwPPS > 0 {
			r := x.FwPPS / first.Paths[i].FwPPS
			rows = append(rows, target{fmt.Sprintf("%s packets/s at N=%d over N=%d", x.Desc, last.N, first.N), "at least 80%", fmt.Sprintf("%.0f%%", 100*r), met(r >= 0.8)})
		}
		worst := -1.0
		if x.Static != nil && x.Static.Error == "" {
			worst = float64(x.Static.Worst)
		} else if x.Checks != nil {
			worst = x.Checks.Dispatch
		}
		if worst >= 0 {
			rows = append(rows, target{fmt.Sprintf("%s rules checked per new packet at N=%d, worst tap", x.Desc, last.N), "at most 40", fmt.Sprintf("%.0f", worst), met(worst <= 40)})
		}
	}
	return rows
}
