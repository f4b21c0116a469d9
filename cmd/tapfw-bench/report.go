package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Report is everything a run measured; -json writes it whole.
type Report struct {
	Command    string     `json:"command"`
	Date       string     `json:"date"`
	Machine    Machine    `json:"machine"`
	Params     Params     `json:"params"`
	Control    []CPResult `json:"controlPlane"`
	Data       []DPResult `json:"dataPlane"`
	Incomplete string     `json:"incomplete,omitempty"`
	Timing     struct {
		ControlPlaneS float64 `json:"controlPlaneSeconds"`
		DataPlaneS    float64 `json:"dataPlaneSeconds"`
		TotalS        float64 `json:"totalSeconds"`
	} `json:"timing"`
}

// Machine describes where the run happened.
type Machine struct {
	Nproc    int    `json:"nproc"`
	CPU      string `json:"cpu"`
	MemMB    int    `json:"memMB"`
	Kernel   string `json:"kernel"`
	Iptables string `json:"iptables"`
	Go       string `json:"go"`
}

func (m Machine) summary() string {
	return fmt.Sprintf("%d CPUs (%s), %d MiB, Linux %s, %s, %s", m.Nproc, m.CPU, m.MemMB, m.Kernel, m.Iptables, m.Go)
}

// Params are the settings of the run.
type Params struct {
	N               []int   `json:"n"`
	DataN           []int   `json:"dataN"`
	Calls           int     `json:"calls"`
	DurationS       float64 `json:"durationSeconds"`
	Jobs            int     `json:"jobs"`
	Bridges         int     `json:"bridges"`
	IptablesMode    string  `json:"iptablesMode"`
	CtUDPTimeout    int     `json:"ctUdpTimeout"`
	CountPackets    int     `json:"countPackets"`
	UserRulesIn     int     `json:"userRulesIn"`
	UserRulesOut    int     `json:"userRulesOut"`
	BaselineOwn     int     `json:"baselineRulesPerTap"`
	BaselineShared  int     `json:"baselineSharedRulesPerCall"`
	FlowsPerPath    int     `json:"flowsPerPath"`
	FrameBytes      int     `json:"frameBytes"`
	PluginSizeBytes int64   `json:"pluginSizeBytes"`
}

func paramsOf(o *options) Params {
	own, shared := baselineRulesPerTap()
	p := Params{N: o.ns, DataN: o.dpNs, Calls: o.calls, DurationS: o.duration.Seconds(), Jobs: o.jobs,
		Bridges: o.bridges, IptablesMode: o.iptables, CtUDPTimeout: o.ctTimeout, CountPackets: o.count,
		UserRulesIn: len(userIn), UserRulesOut: len(userOut), BaselineOwn: own, BaselineShared: shared,
		FlowsPerPath: flowPortHi - flowPortLo + 1, FrameBytes: 14 + 20 + 8 + payloadLen}
	if fi, err := os.Stat(o.plugin); err == nil {
		p.PluginSizeBytes = fi.Size()
	}
	return p
}

func machineInfo(mode string) Machine {
	m := Machine{Nproc: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.Join(strings.Fields(v), " ")
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemMB = kb / 1024
		}
	}
	if out, err := exec.Command(iptablesCmd(mode), "--version").Output(); err == nil {
		m.Iptables = strings.TrimSpace(string(out))
	}
	return m
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

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

// writeMarkdown prints the tables, ready for docs/performance.md.
func writeMarkdown(w io.Writer, rep *Report) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	m := rep.Machine
	p("\n### Benchmark results\n\n")
	p("`%s`, %s: %d CPUs (%s), %d MiB, Linux %s, %s.\n", rep.Command, rep.Date, m.Nproc, m.CPU, m.MemMB, m.Kernel, m.Iptables)
	if rep.Incomplete != "" {
		p("\n**Incomplete run** (%s): the tables hold what was measured before.\n", rep.Incomplete)
	}
	pr := rep.Params
	if len(rep.Control) > 0 {
		p("\n#### Control plane: one call, whole process, wall time in ms (%d ADD and %d DEL at each N)\n\n", pr.Calls, pr.Calls)
		p("Taps spread over %d bridges, each with %d+%d user rules, MAC and IP anti-spoofing, a host section and a named ipset. ", pr.Bridges, pr.UserRulesIn, pr.UserRulesOut)
		p("Baseline: the same rule set in the flat layout, one go-iptables call per rule as the CNI firewall plugin does it: ADD appends the tap's %d rules and checks %d shared ones with `AppendUnique` (iptables -C, then -A), DEL deletes the tap's rules one by one (-D).\n\n", pr.BaselineOwn, pr.BaselineShared)
		hasBase := false
		for _, r := range rep.Control {
			hasBase = hasBase || r.BaselineAdd != nil
		}
		if hasBase {
			p("| taps N | ADD p50 | ADD p95 | DEL p50 | DEL p95 | baseline ADD p50 | p95 | baseline DEL p50 | p95 | ADD plugin/baseline | DEL plugin/baseline |\n")
			p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		} else {
			p("| taps N | ADD p50 | ADD p95 | DEL p50 | DEL p95 |\n|---:|---:|---:|---:|---:|\n")
		}
		for _, r := range rep.Control {
			p("| %d | %s | %s | %s | %s |", r.N, ms(r.PluginAdd.P50), ms(r.PluginAdd.P95), ms(r.PluginDel.P50), ms(r.PluginDel.P95))
			if hasBase && r.BaselineAdd != nil {
				p(" %s | %s | %s | %s | %s | %s |", ms(r.BaselineAdd.P50), ms(r.BaselineAdd.P95), ms(r.BaselineDel.P50), ms(r.BaselineDel.P95),
					ratio(r.PluginAdd.P50, r.BaselineAdd.P50), ratio(r.PluginDel.P50, r.BaselineDel.P50))
			} else if hasBase {
				p(" | | | | | |")
			}
			p("\n")
		}
		if n := len(rep.Control); n >= 2 {
			first, last := rep.Control[0], rep.Control[n-1]
			p("\nGrowth from N=%d to N=%d: ADD p50 ×%.2f, DEL p50 ×%.2f.\n", first.N, last.N,
				last.PluginAdd.P50/first.PluginAdd.P50, last.PluginDel.P50/first.PluginDel.P50)
		}

		p("\n#### Plugin process per call (CPU = user+system of the plugin and the tools it runs; RSS = the largest of them)\n\n")
		p("| taps N | rules in table | ADD CPU p50 ms | DEL CPU p50 ms | ADD RSS p50 MiB | peak RSS MiB |")
		if hasBase {
			p(" baseline ADD CPU p50 ms | baseline DEL CPU p50 ms |")
		}
		p("\n|---:|---:|---:|---:|---:|---:|")
		if hasBase {
			p("---:|---:|")
		}
		p("\n")
		for _, r := range rep.Control {
			peak := max(r.PluginAdd.RSSMaxKB, r.PluginDel.RSSMaxKB)
			p("| %d | %d | %s | %s | %s | %s |", r.N, r.PluginRules, ms(r.PluginAdd.CPUP50), ms(r.PluginDel.CPUP50), mib(r.PluginAdd.RSSP50KB), mib(peak))
			if hasBase && r.BaselineAdd != nil {
				p(" %s | %s |", ms(r.BaselineAdd.CPUP50), ms(r.BaselineDel.CPUP50))
			} else if hasBase {
				p(" | |")
			}
			p("\n")
		}
		hasFloor := false
		for _, r := range rep.Control {
			hasFloor = hasFloor || r.FloorAdd != nil
		}
		if hasFloor {
			p("\n#### The kernel's share: one iptables call changing one rule in the same table\n\n")
			p("`iptables -A` and `-D` of a single rule in a chain nothing jumps to, in the plugin's namespace at N taps. ")
			p("Every nf_tables transaction that adds a rule re-validates every rule reachable from each base chain, so an append costs in proportion to the whole table, whoever makes it; deleting rules needs no validation. ")
			p("The plugin's ADD cannot be faster than this floor; \"ADD minus -A floor\" is what tapfw adds (its own process, netlink reads, set changes and iptables-restore).\n\n")
			p("| taps N | rules in table | one-rule -A p50 | one-rule -D p50 | ADD p50 | ADD minus -A floor | DEL p50 |\n|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, r := range rep.Control {
				if r.FloorAdd == nil {
					continue
				}
				p("| %d | %d | %s | %s | %s | %s | %s |\n", r.N, r.PluginRules, ms(r.FloorAdd.P50), ms(r.FloorDel.P50),
					ms(r.PluginAdd.P50), ms(r.PluginAdd.P50-r.FloorAdd.P50), ms(r.PluginDel.P50))
			}
		}
	}
	if len(rep.Data) > 0 {
		p("\n#### Data plane: one-way UDP, every packet a new flow (%d-byte frames, %.0f s per figure)\n\n", pr.FrameBytes, pr.DurationS)
		p("N managed taps on the VMs' bridge besides the two VMs, whose taps take the names of the worst-placed pair of taps and are added last. Packets/s received by the VM or the host. ")
		p("Rules checked = rule checks per new packet outside the taps' own chains (TFW-T-*) and the host firewall (TFW-HOST-*): ")
		p("the installed rules walked by pkg/explain for the VMs' taps (the walk held against the kernel's counters after %d packets) and for every tap, to find the worst-placed.\n\n", pr.CountPackets)
		p("| taps N | path | with tapfw | no firewall | ratio | rules checked, VMs' taps | rules checked, worst tap | all rules checked, VMs | new conntrack entry |\n")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rep.Data {
			for _, x := range r.Paths {
				rc, all, worst := "-", "-", "-"
				if x.Checks != nil {
					rc, all = fmt.Sprintf("%.1f", x.Checks.Dispatch), fmt.Sprintf("%.1f", x.Checks.Total)
				}
				if x.Static != nil && x.Static.Error == "" {
					worst = fmt.Sprint(x.Static.Worst)
				}
				p("| %d | %s | %s | %s | %.0f%% | %s | %s | %s | %.1f%% |\n", r.N, x.Desc, kpps(x.FwPPS), kpps(x.NoFwPPS), 100*x.Ratio, rc, worst, all, 100*x.NewFlowShare)
			}
		}
		if last := rep.Data[len(rep.Data)-1]; len(last.Paths) > 0 {
			var parts []string
			for _, x := range last.Paths {
				if x.Static != nil && x.Static.Error == "" {
					parts = append(parts, fmt.Sprintf("%s %s", x.Path, x.Static.WorstTaps))
				}
			}
			if len(parts) > 0 {
				p("\nWorst-placed taps at N=%d: %s.\n", last.N, strings.Join(parts, "; "))
			}
		}
	}
	writeTargets(w, rep)
	p("\n")
}

// writeTargets compares the run with the project's performance targets, between the
// smallest and the largest N measured.
func writeTargets(w io.Writer, rep *Report) {
	type row struct{ what, target, got, ok string }
	var rows []row
	yes := func(b bool) string {
		if b {
			return "met"
		}
		return "**missed**"
	}
	if n := len(rep.Control); n > 0 {
		first, last := rep.Control[0], rep.Control[n-1]
		for _, c := range []struct {
			name        string
			plugin, pl0 *CallStats
			base        *CallStats
		}{{"ADD", last.PluginAdd, first.PluginAdd, last.BaselineAdd}, {"DEL", last.PluginDel, first.PluginDel, last.BaselineDel}} {
			rows = append(rows, row{fmt.Sprintf("%s p50 at N=%d", c.name, last.N), "at most 15 ms", ms(c.plugin.P50) + " ms", yes(c.plugin.P50 <= 15)})
			if n > 1 {
				g := c.plugin.P50 / c.pl0.P50
				rows = append(rows, row{fmt.Sprintf("%s p50 at N=%d over N=%d", c.name, last.N, first.N), "at most 2", fmt.Sprintf("%.2f", g), yes(g <= 2)})
			}
			if c.base != nil {
				f := c.base.P50 / c.plugin.P50
				rows = append(rows, row{fmt.Sprintf("%s baseline p50 over tapfw p50 at N=%d", c.name, last.N), "at least 10", fmt.Sprintf("%.1f", f), yes(f >= 10)})
			}
		}
	}
	if n := len(rep.Data); n > 0 {
		first, last := rep.Data[0], rep.Data[n-1]
		for i, x := range last.Paths {
			if n > 1 && i < len(first.Paths) && first.Paths[i].FwPPS > 0 {
				r := x.FwPPS / first.Paths[i].FwPPS
				rows = append(rows, row{fmt.Sprintf("%s packets/s at N=%d over N=%d", x.Desc, last.N, first.N), "at least 80%", fmt.Sprintf("%.0f%%", 100*r), yes(r >= 0.8)})
			}
			worst := -1.0
			if x.Static != nil && x.Static.Error == "" {
				worst = float64(x.Static.Worst)
			} else if x.Checks != nil {
				worst = x.Checks.Dispatch
			}
			if worst >= 0 {
				rows = append(rows, row{fmt.Sprintf("%s rules checked per new packet at N=%d, worst tap", x.Desc, last.N), "at most 40", fmt.Sprintf("%.0f", worst), yes(worst <= 40)})
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n#### Targets\n\n| figure | target | measured | |\n|---|---:|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.what, r.target, r.got, r.ok)
	}
}

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
