package soak

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Failures are the checks the soak failed, in words; none is a pass.
func (r *Result) Failures() []string {
	var f []string
	add := func(bad bool, format string, a ...any) {
		if bad {
			f = append(f, fmt.Sprintf(format, a...))
		}
	}
	t := r.Traffic
	add(r.Aborted != "", "stopped after %d of %d cycles: %s", r.Done, r.O.Cycles, r.Aborted)
	add(r.PluginErrors > 0, "%d plugin calls failed", r.PluginErrors)
	add(r.CheckErrors > 0, "%d CHECKs of the fixed taps failed (drift)", r.CheckErrors)
	add(t.TCPLost > 0 || t.TCPRecv != t.TCPSent || t.TCPBytesRecv != t.TCPBytesSent,
		"tcp flow lost records: %d sent, %d received", t.TCPSent, t.TCPRecv)
	add(t.TCPOutOfOrder > 0, "tcp flow: %d records out of order", t.TCPOutOfOrder)
	add(t.TCPBroken > 0, "tcp flow broken (%d errors)", t.TCPBroken)
	add(t.TCPLongest > r.O.MaxStall, "tcp flow stalled %v (limit %v)", t.TCPLongest.Round(time.Millisecond), r.O.MaxStall)
	add(t.TCPSegsLost > 0, "tcp flow: %d segments lost (%d retransmitted)", t.TCPSegsLost, t.TCPRetrans)
	add(t.UDPLost > 0, "udp flow lost %d of %d datagrams", t.UDPLost, t.UDPSent)
	add(t.ProbeTCPPassed > 0, "tcp probe to the closed port %d passed %d times", ProbePort, t.ProbeTCPPassed)
	add(t.ProbeUDPPassed > 0, "udp probe to the closed port %d passed %d times", UDPProbePort, t.ProbeUDPPassed)
	add(t.TCPSent == 0 || t.UDPRecv == 0 || t.ProbeTCPTried == 0 || t.ProbeUDPSent == 0, "the traffic did not run")
	for i, b := range r.Before.List {
		if i < len(r.After.List) && r.After.List[i].N != b.N {
			f = append(f, fmt.Sprintf("%s: %d before, %d after", b.Name, b.N, r.After.List[i].N))
		}
	}
	for _, c := range r.RSS {
		add(!c.OK, "plugin RSS per %s grew %+.1f%% (median %s to %s)", c.Command, 100*c.Growth, mib(c.First), mib(c.Last))
	}
	return f
}

func mib(kb float64) string { return fmt.Sprintf("%.1f MiB", kb/1024) }

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

func okIf(good bool) string {
	if good {
		return "ok"
	}
	return "**FAIL**"
}

// latencies are the wall times of the cycles' calls of command, in ms.
func (r *Result) latencies(command string) []float64 {
	var out []float64
	for _, c := range r.Calls {
		if c.Command == command {
			out = append(out, ms(c.Wall))
		}
	}
	return out
}

// WriteMarkdown writes the backend's summary table.
func (r *Result) WriteMarkdown(w io.Writer) {
	o, t := r.O, r.Traffic
	fmt.Fprintf(w, "### %s: %d cycles, %d pool taps, seed %d (%v)\n\n", o.Backend, r.Done, o.Taps, o.Seed, r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "| check | value | |\n|---|---|---|\n")
	row := func(name, value, verdict string) { fmt.Fprintf(w, "| %s | %s | %s |\n", name, value, verdict) }
	row("cycles: ADD / DEL, then teardown DELs", fmt.Sprintf("%d / %d, %d", r.Adds, r.Dels, r.Teardown), okIf(r.Aborted == ""))
	row("templates ADDed", kinds(r.Kinds), "")
	for _, c := range []string{"ADD", "DEL"} {
		l := r.latencies(c)
		row(c+" p50 / p99", fmt.Sprintf("%.1f / %.1f ms", Percentile(l, 50), Percentile(l, 99)), "")
	}
	row("plugin errors, fixed taps' CHECKs failed (drift)", fmt.Sprintf("%d, %d", r.PluginErrors, r.CheckErrors), okIf(r.PluginErrors == 0 && r.CheckErrors == 0))
	row("tcp flow: records sent / received / lost", fmt.Sprintf("%d / %d / %d", t.TCPSent, t.TCPRecv, t.TCPLost),
		okIf(t.TCPLost == 0 && t.TCPSent == t.TCPRecv && t.TCPSent > 0 && t.TCPOutOfOrder == 0))
	row("tcp flow: bytes sent / received", fmt.Sprintf("%d / %d", t.TCPBytesSent, t.TCPBytesRecv), okIf(t.TCPBytesSent == t.TCPBytesRecv))
	row("tcp flow: data segments out / in, lost both ways", fmt.Sprintf("%d / %d, %d", t.TCPSegsOut, t.TCPSegsIn, t.TCPSegsLost), okIf(t.TCPSegsLost == 0))
	row("tcp flow: segments retransmitted, in the handshake", fmt.Sprintf("%d, %d", t.TCPRetrans, t.TCPSetupRetrans), "")
	row("tcp flow: longest wait for an ack, resets/errors", fmt.Sprintf("%.0f ms (limit %v), %d", ms(t.TCPLongest), o.MaxStall, t.TCPBroken),
		okIf(t.TCPLongest <= o.MaxStall && t.TCPBroken == 0))
	row("udp flow: datagrams sent / received / lost", fmt.Sprintf("%d / %d / %d", t.UDPSent, t.UDPRecv, t.UDPLost), okIf(t.UDPLost == 0 && t.UDPRecv > 0))
	row(fmt.Sprintf("probe tcp :%d: connects tried / passed", ProbePort), fmt.Sprintf("%d / %d", t.ProbeTCPTried, t.ProbeTCPPassed), okIf(t.ProbeTCPPassed == 0 && t.ProbeTCPTried > 0))
	row(fmt.Sprintf("probe udp :%d: datagrams sent / passed", UDPProbePort), fmt.Sprintf("%d / %d", t.ProbeUDPSent, t.ProbeUDPPassed), okIf(t.ProbeUDPPassed == 0 && t.ProbeUDPSent > 0))
	for i, b := range r.Before.List {
		if i < len(r.After.List) {
			a := r.After.List[i]
			row(b.Name+": before / after", fmt.Sprintf("%d / %d", b.N, a.N), okIf(a.N == b.N))
		}
	}
	for _, c := range r.RSS {
		v := "too few calls to compare"
		if c.Window > 0 {
			v = fmt.Sprintf("%s / %s (%+.1f%%; median of %d calls each)", mib(c.First), mib(c.Last), 100*c.Growth, c.Window)
		}
		row("plugin max RSS per "+c.Command+": start / end", v, okIf(c.OK))
	}
	r.writeVerdict(w)
}

func (r *Result) writeVerdict(w io.Writer) {
	f := r.Failures()
	if len(f) == 0 {
		fmt.Fprintf(w, "\n%s: **PASS**\n\n", r.O.Backend)
		return
	}
	fmt.Fprintf(w, "\n%s: **FAIL**: %s\n", r.O.Backend, strings.Join(f, "; "))
	for _, e := range append(slices.Clone(r.Errors), r.Traffic.Notes...) {
		fmt.Fprintf(w, "- %s\n", e)
	}
	if d := Leaked(r.Before, r.After, 40); len(d) > 0 {
		fmt.Fprintf(w, "- ruleset lines after, not before:\n\n```\n%s\n```\n", strings.Join(d, "\n"))
	}
	if d := conntrackDiff(r.Before.Conntrack, r.After.Conntrack); len(d) > 0 {
		fmt.Fprintf(w, "- conntrack entries after, not before:\n\n```\n%s\n```\n", strings.Join(d, "\n"))
	}
	fmt.Fprintln(w)
}

func kinds(m map[string]int) string {
	var parts []string
	for _, t := range templates {
		if n := m[t.name]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t.name, n))
		}
	}
	return strings.Join(parts, ", ")
}

// conntrackDiff are the lines of after that are not in before, with
// their timeouts and counters left out (at most 20).
func conntrackDiff(before, after []string) []string {
	seen := map[string]bool{}
	for _, l := range before {
		seen[ctKey(l)] = true
	}
	var out []string
	for _, l := range after {
		if !seen[ctKey(l)] && len(out) < 20 {
			out = append(out, l)
		}
	}
	return out
}

// ctKey is a conntrack line without the fields that change while an
// entry lives (its timeout, state, counters and flags): the family and
// protocol, and the tuples.
func ctKey(l string) string {
	f := strings.Fields(l)
	var keep []string
	for i, x := range f {
		k, _, _ := strings.Cut(x, "=")
		if i < 4 || k == "src" || k == "dst" || k == "sport" || k == "dport" {
			keep = append(keep, x)
		}
	}
	return strings.Join(keep, " ")
}

// leaks are the counts that did not come back after the cycles.
func (r *Result) leaks() []string {
	var out []string
	for i, b := range r.Before.List {
		if i < len(r.After.List) && r.After.List[i].N != b.N {
			out = append(out, fmt.Sprintf("%s %+d", b.Name, r.After.List[i].N-b.N))
		}
	}
	return out
}

// WriteSummary writes one line per backend's soak: its cycles, the
// plugin's errors, the fixed taps' drift, the counts that leaked, the
// flows' gaps and the probes' verdicts.
func WriteSummary(w io.Writer, results []*Result) {
	fmt.Fprintf(w, "### Summary\n\n| backend | cycles | plugin errors | drift (CHECKs failed) | leaks | flow gaps | probes passed | result |\n|---|---:|---:|---:|---|---|---|---|\n")
	for _, r := range results {
		t := r.Traffic
		leaks := strings.Join(r.leaks(), ", ")
		if leaks == "" {
			leaks = "none"
		}
		verdict := "PASS"
		if len(r.Failures()) > 0 {
			verdict = "**FAIL**"
		}
		fmt.Fprintf(w, "| %s | %d of %d | %d | %d | %s | tcp %d lost, %d out of order, longest wait %.0f ms; udp %d gaps, %d lost | tcp %d of %d, udp %d of %d | %s |\n",
			r.O.Backend, r.Done, r.O.Cycles, r.PluginErrors, r.CheckErrors, leaks, t.TCPLost, t.TCPOutOfOrder, ms(t.TCPLongest),
			t.UDPGaps, t.UDPLost, t.ProbeTCPPassed, t.ProbeTCPTried, t.ProbeUDPPassed, t.ProbeUDPSent, verdict)
	}
	fmt.Fprintln(w)
}
