package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/tapfw/tapfw/pkg/netfilter"
)

// WriteTaps prints the taps as a table for people.
func WriteTaps(w io.Writer, taps []Tap) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TAP\tBRIDGE\tMAC\tIPS\tRULES IN/OUT\tIN ACCEPTED\tIN DROPPED\tOUT ACCEPTED\tOUT DROPPED\tATTACHED BY")
	for _, t := range taps {
		by := "(leftover: no dispatch record)"
		if t.Attached {
			by = dash(t.Network) + " " + dash(t.ContainerID) + " " + dash(t.IfName)
		}
		in, out := verdicts(t.Traffic["in"]), verdicts(t.Traffic["out"])
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", t.Name, dash(t.Bridge), dash(t.MAC), dash(strings.Join(t.IPs, ",")),
			t.Rules["in"], t.Rules["out"], in[0], in[1], out[0], out[1], by)
	}
	return tw.Flush()
}

// WriteRules prints one tap's rules as a table for people.
func WriteRules(w io.Writer, t Tap, rules []Rule) error {
	fmt.Fprintf(w, "tap %s on bridge %s, mac %s, ips %s\n", t.Name, dash(t.Bridge), dash(t.MAC), dash(strings.Join(t.IPs, " ")))
	if t.Attached {
		fmt.Fprintf(w, "attached by network %s, container %s, interface %s\n", dash(t.Network), dash(t.ContainerID), dash(t.IfName))
	} else {
		fmt.Fprintln(w, "not attached: chains or sets without a dispatch record (tapfw gc removes them)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\t#\tACTION\tMATCH\tLOG\tFAMILIES\tPACKETS\tBYTES\tWHAT")
	for _, r := range rules {
		num := "-"
		if r.Number > 0 {
			num = r.ID()
		}
		what := r.Comment
		switch r.Kind {
		case "group":
			what = "group " + r.Name
		case "group rule":
			what = strings.TrimSpace("group " + r.Name + " (shared counters) " + r.Comment)
		case "rule":
		default:
			what = "tapfw: " + r.Name
		}
		log := ""
		if r.Log {
			log = "log"
			if r.LogLevel != "" {
				log = r.LogLevel
			}
		}
		fams := strings.ReplaceAll(strings.Join(r.Families, ","), "ipv", "v")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Direction, num, r.Action, dash(r.Match), log, fams, r.Packets, r.Bytes, what)
	}
	return tw.Flush()
}

// verdicts is a direction's accepted and dropped counts, "-" each when
// they are not counted per tap.
func verdicts(v *Verdicts) [2]string {
	if v == nil {
		return [2]string{"-", "-"}
	}
	return [2]string{pb(v.Accepted), pb(v.Dropped)}
}

func pb(c netfilter.Counter) string { return fmt.Sprintf("%d/%dB", c.Packets, c.Bytes) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteMetrics prints per-tap and per-rule counters in the Prometheus text
// exposition format, for the node_exporter textfile collector.
func WriteMetrics(w io.Writer, taps []Shown) error {
	type sample struct {
		labels string
		value  uint64
	}
	families := []struct {
		name, help, typ string
		samples         []sample
	}{
		{"tapfw_taps", "Taps with chains or sets installed.", "gauge", nil},
		{"tapfw_tap_packets_total", "Packets a tap's chains accepted or dropped (DROP and REJECT), by direction: in is to the VM.", "counter", nil},
		{"tapfw_tap_bytes_total", "Bytes a tap's chains accepted or dropped, by direction.", "counter", nil},
		{"tapfw_tap_rules", "Rules of a tap's config, by direction.", "gauge", nil},
		{"tapfw_rule_packets_total", "Packets that matched a rule of a tap's config (number as in the config, 1-based), or one of tapfw's own.", "counter", nil},
		{"tapfw_rule_bytes_total", "Bytes that matched a rule of a tap's config, or one of tapfw's own.", "counter", nil},
	}
	families[0].samples = []sample{{"", uint64(len(taps))}}
	for _, sh := range taps {
		t, rules := sh.Tap, sh.Rules
		tl := fmt.Sprintf("tap=%q,bridge=%q", t.Name, t.Bridge)
		for _, dir := range []string{"in", "out"} {
			v := t.Traffic[dir]
			for _, x := range []struct {
				verdict string
				c       netfilter.Counter
			}{{"accepted", v.Accepted}, {"dropped", v.Dropped}} {
				l := fmt.Sprintf("%s,direction=%q,verdict=%q", tl, dir, x.verdict)
				families[1].samples = append(families[1].samples, sample{l, x.c.Packets})
				families[2].samples = append(families[2].samples, sample{l, x.c.Bytes})
			}
			families[3].samples = append(families[3].samples, sample{fmt.Sprintf("%s,direction=%q", tl, dir), uint64(t.Rules[dir])})
		}
		for _, r := range rules {
			id := r.ID()
			switch r.Kind {
			case "rule":
			case "group rule":
				id = fmt.Sprintf("+%s/%s", r.Name, r.ID())
			case "group":
				id = "group " + r.Name
			default:
				id = r.Name
				if r.Match != "" && r.Kind == "builtin" {
					id += " " + r.Match
				}
			}
			l := fmt.Sprintf("%s,direction=%q,rule=%q,action=%q", tl, r.Direction, id, r.Action)
			families[4].samples = append(families[4].samples, sample{l, r.Packets})
			families[5].samples = append(families[5].samples, sample{l, r.Bytes})
		}
	}
	for _, f := range families {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		sort.SliceStable(f.samples, func(i, j int) bool { return f.samples[i].labels < f.samples[j].labels })
		for _, x := range f.samples {
			if x.labels == "" {
				fmt.Fprintf(w, "%s %d\n", f.name, x.value)
			} else {
				fmt.Fprintf(w, "%s{%s} %d\n", f.name, x.labels, x.value)
			}
		}
	}
	return nil
}
