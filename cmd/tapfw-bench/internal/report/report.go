// Package report holds what a benchmark run measured, as -json writes it
// and -from-json reads it back, and prints it as markdown tables.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
)

// Report is everything a run measured; -json writes it whole.
type Report struct {
	Command string  `json:"command"`
	Date    string  `json:"date"`
	Machine Machine `json:"machine"`
	Params  Params  `json:"params"`
	// Backends are the plugin's backends measured, one after the other,
	// each in sandboxes of its own.
	Backends []BackendRun `json:"backends,omitempty"`
	// Control and Data are a run of one backend in files written before
	// Backends existed; ReadJSON moves them into Backends.
	Control    []CPResult `json:"controlPlane,omitempty"`
	Data       []DPResult `json:"dataPlane,omitempty"`
	Incomplete string     `json:"incomplete,omitempty"`
	Timing     struct {
		ControlPlaneS float64 `json:"controlPlaneSeconds"`
		DataPlaneS    float64 `json:"dataPlaneSeconds"`
		TotalS        float64 `json:"totalSeconds"`
	} `json:"timing"`
}

// BackendRun is what one backend of the plugin measured.
type BackendRun struct {
	Backend string     `json:"backend"` // iptables or nftables
	Control []CPResult `json:"controlPlane"`
	Data    []DPResult `json:"dataPlane"`
	Timing  struct {
		ControlPlaneS float64 `json:"controlPlaneSeconds"`
		DataPlaneS    float64 `json:"dataPlaneSeconds"`
	} `json:"timing"`
}

// Backend is the run of backend name, or nil.
func (r *Report) Backend(name string) *BackendRun {
	for i := range r.Backends {
		if r.Backends[i].Backend == name {
			return &r.Backends[i]
		}
	}
	return nil
}

// Measured is whether any backend measured anything.
func (r *Report) Measured() bool {
	for _, b := range r.Backends {
		if len(b.Control)+len(b.Data) > 0 {
			return true
		}
	}
	return false
}

// baseline is the control plane's baseline row at N, from whichever
// backend's run measured it (the baseline does not depend on the backend).
func (r *Report) baseline(n int) *CPResult {
	for _, b := range r.Backends {
		for i := range b.Control {
			if c := &b.Control[i]; c.N == n && c.BaselineAdd != nil {
				return c
			}
		}
	}
	return nil
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

// Summary is the machine on one line.
func (m Machine) Summary() string {
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
	// Established traffic: iperf3 seconds per run, runs per figure (the
	// median is reported) and the small writes' size in bytes.
	IperfSeconds    float64 `json:"iperfSeconds,omitempty"`
	IperfRuns       int     `json:"iperfRuns,omitempty"`
	SmallWriteBytes int     `json:"smallWriteBytes,omitempty"`
}

// MachineInfo describes this machine; iptables is the iptables command
// whose version it reports.
func MachineInfo(iptables string) Machine {
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
	if out, err := exec.Command(iptables, "--version").Output(); err == nil {
		m.Iptables = strings.TrimSpace(string(out))
	}
	return m
}

// WriteJSON writes rep to path.
func WriteJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a report WriteJSON wrote.
func ReadJSON(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rep.Backends) == 0 && len(rep.Control)+len(rep.Data) > 0 {
		// A file of one backend, before Backends: the plugin's default.
		rep.Backends = []BackendRun{{Backend: "iptables", Control: rep.Control, Data: rep.Data}}
		rep.Backends[0].Timing.ControlPlaneS, rep.Backends[0].Timing.DataPlaneS = rep.Timing.ControlPlaneS, rep.Timing.DataPlaneS
		rep.Control, rep.Data = nil, nil
	}
	return &rep, nil
}

// Sample is one measured process: wall time from fork to reaped, and the
// rusage wait4 reports for it. That rusage covers the process and every
// child it waited for (iptables-save, iptables-restore, ipset, iptables):
// CPU times are summed. MaxRSS is the plugin's own peak when it reported
// one (RSSReported), else the rusage's, which counts the benchmark's own
// memory too (Go starts children with vfork).
type Sample struct {
	WallMs      float64 `json:"wallMs"`
	UserMs      float64 `json:"userMs"`
	SysMs       float64 `json:"sysMs"`
	MaxRSSKB    int64   `json:"maxRssKB"`
	RSSReported bool    `json:"rssReported,omitempty"`
}

// CPUMs is user plus system time.
func (s Sample) CPUMs() float64 { return s.UserMs + s.SysMs }

// CallStats summarizes the samples of one kind of call at one N. Wall
// times in milliseconds; p95 is the nearest-rank percentile.
type CallStats struct {
	Calls    int     `json:"calls"`
	P50      float64 `json:"p50Ms"`
	P95      float64 `json:"p95Ms"`
	Mean     float64 `json:"meanMs"`
	Min      float64 `json:"minMs"`
	Max      float64 `json:"maxMs"`
	CPUP50   float64 `json:"cpuP50Ms"`
	CPUMean  float64 `json:"cpuMeanMs"`
	RSSP50KB int64   `json:"rssP50KB"`
	RSSMaxKB int64   `json:"rssMaxKB"`
	// RSSReported: every sample's RSS is the plugin's own report.
	RSSReported bool     `json:"rssReported,omitempty"`
	Samples     []Sample `json:"samples"`
	Errors      int      `json:"errors,omitempty"`
	FirstFail   string   `json:"firstError,omitempty"`
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Summarize computes the statistics of samples.
func Summarize(samples []Sample) *CallStats {
	s := &CallStats{Calls: len(samples), Samples: samples}
	if len(samples) == 0 {
		return s
	}
	var wall, cpu []float64
	var rss []int64
	s.RSSReported = true
	for _, x := range samples {
		s.RSSReported = s.RSSReported && x.RSSReported
		wall = append(wall, x.WallMs)
		cpu = append(cpu, x.CPUMs())
		rss = append(rss, x.MaxRSSKB)
		s.Mean += x.WallMs
		s.CPUMean += x.CPUMs()
	}
	slices.Sort(wall)
	slices.Sort(cpu)
	slices.Sort(rss)
	s.Mean /= float64(len(samples))
	s.CPUMean /= float64(len(samples))
	s.P50, s.P95 = percentile(wall, 0.5), percentile(wall, 0.95)
	s.Min, s.Max = wall[0], wall[len(wall)-1]
	s.CPUP50 = percentile(cpu, 0.5)
	s.RSSP50KB = rss[(len(rss)-1)/2]
	s.RSSMaxKB = rss[len(rss)-1]
	return s
}

// CPResult is the control plane at one N.
type CPResult struct {
	N              int        `json:"n"`
	PluginAdd      *CallStats `json:"pluginAdd"`
	PluginDel      *CallStats `json:"pluginDel"`
	BaselineAdd    *CallStats `json:"baselineAdd,omitempty"`
	BaselineDel    *CallStats `json:"baselineDel,omitempty"`
	PluginRules    int        `json:"pluginRules"`   // rules in the filter table at N taps
	BaselineRules  int        `json:"baselineRules"` // the same for the baseline's namespace
	PopulateS      float64    `json:"populateSeconds"`
	PopulateCalls  int        `json:"populateCalls"`
	PopulateLastMs float64    `json:"populateLastCallMs"`
	// FloorAdd and FloorDel are one iptables call appending or deleting a
	// single rule in a chain nothing jumps to, in the plugin's table at N:
	// what any rule change costs there, whoever makes it.
	FloorAdd *CallStats `json:"floorAdd,omitempty"`
	FloorDel *CallStats `json:"floorDel,omitempty"`
	// FloorTool is what made the floor's changes: "" or "iptables" (-A and
	// -D), "nft" (add rule, flush chain, in tapfw's bridge table).
	FloorTool string `json:"floorTool,omitempty"`
	// CommitJump and CommitPlain (nftables) are the kernel's commit of
	// one element added over netlink: to the dispatch map, jumping to a
	// chain (the kernel then validates what the base chains reach,
	// through every element of the verdict maps), and to a plain set.
	CommitJump  *CallStats `json:"commitJump,omitempty"`
	CommitPlain *CallStats `json:"commitPlain,omitempty"`
	// ApplyChange is tapfw apply changing the named set every tap's
	// host section shares; ApplySame is one finding nothing to change.
	ApplyChange *CallStats `json:"applyChange,omitempty"`
	ApplySame   *CallStats `json:"applySame,omitempty"`
	// ConsoleTaps, ConsolePage and ConsolePut are the web console's GET
	// /api/taps, its taps page and a PUT of that named set (an apply),
	// timed by the client; ListCLI is tapfw list --json beside them.
	ConsoleTaps *CallStats `json:"consoleTaps,omitempty"`
	ConsolePage *CallStats `json:"consolePage,omitempty"`
	ConsolePut  *CallStats `json:"consolePut,omitempty"`
	ListCLI     *CallStats `json:"listCLI,omitempty"`
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
	// Established is one TCP connection VM to VM at this N, beside the
	// floor; measured at the smallest and the largest N only.
	Established *Established `json:"established,omitempty"`
}

// Established is TCP on one established connection from VM a to VM b
// (iperf3, one stream, the median of IperfRuns runs): through tapfw, and
// through the floor, the same two-namespace path whose host has only a
// conntrack table and two accept rules (established, the iperf3 port).
type Established struct {
	Fw    TCPFigures `json:"tapfw"`
	Floor TCPFigures `json:"floor"`
}

// TCPFigures are the medians of one path's runs, and the runs.
type TCPFigures struct {
	BulkBps      float64   `json:"bulkBitsPerSecond"`      // bulk: received bits/s
	SmallPps     float64   `json:"smallSegmentsPerSecond"` // small writes: TCP segments/s the server received
	SmallWps     float64   `json:"smallWritesPerSecond"`   // small writes: writes/s of SmallWriteBytes
	BulkRuns     []float64 `json:"bulkRuns"`
	SmallPpsRuns []float64 `json:"smallSegmentsRuns"`
	SmallWpsRuns []float64 `json:"smallWritesRuns"`
}

// Median is the median of v (the lower middle of an even count), or 0.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// PathResult is one direction of traffic at one N.
type PathResult struct {
	Path    string  `json:"path"` // forward, input, output
	Desc    string  `json:"desc"`
	FwPPS   float64 `json:"fwPps"`
	NoFwPPS float64 `json:"noFwPps"`
	// FloorPPS is the same path through a host whose only firewall is
	// conntrack and an accept (the established-traffic floor), when
	// measured: what a new flow costs any stateful firewall.
	FloorPPS     float64       `json:"floorPps,omitempty"`
	Ratio        float64       `json:"ratio"` // firewall / no firewall
	FwSentPPS    float64       `json:"fwSentPps"`
	NoFwSentPPS  float64       `json:"noFwSentPps"`
	NewFlowShare float64       `json:"newFlowShare"` // share of packets that made a new conntrack entry (firewalled)
	Checks       *RuleChecks   `json:"ruleChecks,omitempty"`
	Static       *StaticChecks `json:"staticChecks,omitempty"`
	CheckedTap   string        `json:"checkedTap"` // the tap whose dispatch the count follows
	CountRecv    uint64        `json:"countReceived"`
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

// StaticChecks are one path's dispatch checks, walked by pkg/explain for
// every tap: the VMs' figure and the worst.
type StaticChecks struct {
	VM        int    `json:"vm"`        // the traffic VMs' path, to compare with RuleChecks
	Worst     int    `json:"worst"`     // the largest over all taps
	WorstTaps string `json:"worstTaps"` // which tap (or pair of taps) it is
	Taps      int    `json:"taps"`      // taps walked
	Error     string `json:"error,omitempty"`
}
