package ruleset

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// hostChains are the host's chains: its rules between what the host
// needs and its policy. Before them, in: the blacklist (if the config
// has one), the cluster's hosts, neighbour discovery, and the management
// set's ports (anti-lockout, if the config has the set).
func hostChains(h *model.Host, fam *Family, sets map[string][]netip.Prefix, logDropped bool, limit string, log logTo) (Chain, Chain, error) {
	var chains [2]Chain
	for i, d := range []struct {
		chain, dir string
		rules      []model.Rule
		cluster    Rule
		level      string
	}{
		{ChainHostIn, "in", h.In, Rule{SetSrc: fam.SetCluster()}, h.LogLevelIn},
		{ChainHostOut, "out", h.Out, Rule{SetDst: fam.SetCluster()}, h.LogLevelOut},
	} {
		cx := chainCtx{chain: d.chain, fam: fam, owner: OwnerHost, logName: "host", dir: d.dir, allow: Verdict{Target: "RETURN"}, limit: limit, log: log}
		cluster := d.cluster
		cluster.Chain, cluster.Comment, cluster.Verdict = d.chain, OwnerHost+": cluster hosts", Verdict{Target: "RETURN"}
		var rs []Rule
		if _, ok := sets[model.SetBlacklist]; ok && d.dir == "in" {
			rs = append(rs, Rule{Chain: d.chain, SetSrc: fam.UserSet(model.SetBlacklist), Comment: OwnerHost + ": blacklist", Verdict: Verdict{Target: "DROP"}})
		}
		rs = append(rs, protections(d.chain, d.dir, h, fam)...)
		rs = append(rs, cluster)
		if fam.V6 {
			// The host's own neighbour discovery: without it, it has no
			// IPv6 at all.
			for _, typ := range []string{icmp6RouterSolicit, icmp6RouterAdvert, icmp6NeighSolicit, icmp6NeighAdvert} {
				rs = append(rs, ndp(d.chain, typ, OwnerHost+": ndp", Verdict{Target: "RETURN"}))
			}
		}
		if d.dir == "out" {
			// The host's own group membership reports (and queries, if it
			// is a querier): dropped, they leave the host deaf to
			// multicast behind a snooping bridge or switch. They go to
			// multicast addresses, so what comes in never meets HOST-IN.
			if fam.V6 {
				rs = append(rs, mld(d.chain, icmp6MLDQuery, OwnerHost+": mld", Verdict{Target: "RETURN"}))
				for _, typ := range mldListener {
					r := mld(d.chain, typ, OwnerHost+": mld", Verdict{Target: "RETURN"})
					r.Dst = multicast6
					rs = append(rs, r)
				}
			} else {
				rs = append(rs, igmp(d.chain, OwnerHost+": igmp", Verdict{Target: "RETURN"}))
			}
		}
		if _, ok := sets[model.SetManagement]; ok && d.dir == "in" {
			rs = append(rs, managementRules(d.chain, h.Management, fam)...)
		}
		user, err := cx.userRules(d.rules)
		if err != nil {
			return Chain{}, Chain{}, fmt.Errorf("host.%w", err)
		}
		rs = append(rs, user...)
		chains[i] = Chain{Name: d.chain, Rules: append(rs, cx.policy(model.Drop, model.PolicyLogLevel(d.level, logDropped))...)}
	}
	return chains[0], chains[1], nil
}

// The TCP flag combinations no packet may carry, as Proxmox VE's
// PVEFW-tcpflags (Shorewall's tcpflags action) lists them: mask and
// flags set, and a source port (0) where the combination needs one.
var badTCPFlags = []struct{ mask, comp, sport string }{
	{"FIN,SYN,RST,PSH,ACK,URG", "FIN,PSH,URG", ""},
	{"FIN,SYN,RST,PSH,ACK,URG", "NONE", ""},
	{"SYN,RST", "SYN,RST", ""},
	{"FIN,SYN", "FIN,SYN", ""},
	{"FIN,SYN,RST,ACK", "SYN", "0"},
}

// protections are the host's own filters before its rules: INVALID
// (unless allowed), and on the way in the smurfs (IPv4 packets from a
// broadcast or multicast address, a DHCP client's 0.0.0.0 apart), TCP
// flag combinations no stack sends, and SYNs over a source's limit.
func protections(chain, dir string, h *model.Host, fam *Family) []Rule {
	drop := Verdict{Target: "DROP"}
	var rs []Rule
	if !h.AllowInvalid {
		rs = append(rs, Rule{Chain: chain, CtState: "INVALID", Comment: OwnerHost + ": invalid", Verdict: drop})
	}
	if dir != "in" {
		return rs
	}
	if h.Smurfs && !fam.V6 {
		rs = append(rs,
			Rule{Chain: chain, Src: anyAddr, SrcNeg: true, SrcType: "BROADCAST", Comment: OwnerHost + ": smurfs", Verdict: drop},
			Rule{Chain: chain, Src: multicast4, Comment: OwnerHost + ": smurfs", Verdict: drop})
	}
	if h.TCPFlags {
		for _, f := range badTCPFlags {
			rs = append(rs, Rule{Chain: chain, Proto: "tcp", SPort: f.sport, TCPFlags: [2]string{f.mask, f.comp}, Comment: OwnerHost + ": tcp flags", Verdict: drop})
		}
	}
	if s := h.SynFlood; s != nil {
		// Per source, as Proxmox VE counts them: an IPv6 host's /64.
		hl := &HashLimit{Rate: s.Rate, Burst: s.Burst, Name: SynFloodName}
		if fam.V6 {
			hl.SrcMask = 64
		}
		rs = append(rs, Rule{Chain: chain, Proto: "tcp", TCPFlags: [2]string{"FIN,SYN,RST,ACK", "SYN"}, HashLimit: hl, Comment: OwnerHost + ": syn flood", Verdict: drop})
	}
	return rs
}

// SynFloodName is the hashlimit table of the host's SYN flood limit.
const SynFloodName = "tfw-syn"

// managementRules let the management set's sources reach the management
// ports: tcp/22 at least, so that no host rule or policy locks the
// operator out.
func managementRules(chain string, ports []model.Ports, fam *Family) []Rule {
	if len(ports) == 0 {
		ports = []model.Ports{model.DefaultManagement}
	}
	var rs []Rule
	for _, p := range ports {
		r := Rule{Chain: chain, SetSrc: fam.UserSet(model.SetManagement), Proto: p.Proto, Comment: OwnerHost + ": management", Verdict: Verdict{Target: "RETURN"}}
		if strings.Contains(p.Ports, ",") {
			r.DPorts = p.Ports
		} else {
			r.DPort = p.Ports
		}
		rs = append(rs, r)
	}
	return rs
}

// LogPrefix is the LOG prefix for owner, direction and what ("drop", "rej"
// or "r<N>" for user rule N): "tfw:tap110i0:out:drop ", or without an
// owner (a tap's rules, unless its prefixes name it) "tfw:out:drop ". At
// most 29 characters, as the kernel allows.
func LogPrefix(owner, dir, what string) string {
	if owner == "" {
		return "tfw:" + dir + ":" + what + " "
	}
	return "tfw:" + owner + ":" + dir + ":" + what + " "
}

// LogLine is what a log prefix says: whose rule logged (a tap, "host" for
// the host firewall, "+<group>" for a security group; "" for a tap's rule
// whose prefix does not name it, the line's ports do), the direction (in:
// to the VM or host; out: from it) and what ("drop" or "rej" for the
// policy, "r<N>" for rule N of the direction, 1-based as in the config).
type LogLine struct {
	Owner, Dir, What string
}

// ParseLogPrefix reads back what LogPrefix wrote, from a kernel log line
// ("... tfw:tap110i0:in:drop IN=vmbr0 ...") or an NFLOG prefix.
func ParseLogPrefix(s string) (LogLine, bool) {
	i := strings.Index(s, "tfw:")
	if i < 0 {
		return LogLine{}, false
	}
	word, _, _ := strings.Cut(s[i:], " ")
	f := strings.Split(word, ":")
	if len(f) == 3 {
		f = []string{f[0], "", f[1], f[2]}
	} else if len(f) != 4 || f[1] == "" {
		return LogLine{}, false
	}
	if (f[2] != "in" && f[2] != "out") || f[3] == "" {
		return LogLine{}, false
	}
	return LogLine{Owner: f[1], Dir: f[2], What: f[3]}, true
}

// chainCtx is what the rules of one direction of one owner share.
type chainCtx struct {
	chain   string
	fam     *Family
	owner   string  // the comment's owner: a tap name or OwnerHost
	logName string  // the name in LOG prefixes
	dir     string  // in or out
	allow   Verdict // what an allowed packet gets: ACCEPT, RETURN, or a goto to ChainGroupAllow
	limit   string  // LOG rate
	log     logTo
}

func (cx chainCtx) logRule(what, level, comment string) Rule {
	return Rule{Chain: cx.chain, Limit: cx.limit, Comment: comment, Verdict: cx.logVerdict(what, level)}
}

// logVerdict logs with the prefix for what, to the kernel log at level
// or to NFLOG (which has no level).
func (cx chainCtx) logVerdict(what, level string) Verdict {
	v := Verdict{Target: "LOG", LogPrefix: LogPrefix(cx.logName, cx.dir, what)}
	if level != model.DefaultLogLevel {
		v.LogLevel = level
	}
	if cx.log.target == "NFLOG" {
		v.Target, v.NFLogGroup = "NFLOG", cx.log.group
	}
	return v
}

// logTo is where a chain's log lines go.
type logTo struct {
	target string // LOG or NFLOG
	group  int    // NFLOG's group
}

// policy ends the chain with its policy a, logged at level first unless
// level is "".
func (cx chainCtx) policy(a model.Action, level string) []Rule {
	own := cx.owner + ": "
	var rs []Rule
	switch a {
	case model.Accept:
		return []Rule{{Chain: cx.chain, Comment: own + "policy accept", Verdict: cx.allow}}
	case model.Reject:
		if level != "" {
			rs = append(rs, cx.logRule("rej", level, own+"log policy"))
		}
		return append(rs, Rule{Chain: cx.chain, Comment: own + "policy reject", Verdict: Verdict{Target: "REJECT", RejectWith: cx.fam.RejectWith()}})
	default:
		if level != "" {
			rs = append(rs, cx.logRule("drop", level, own+"log policy"))
		}
		return append(rs, Rule{Chain: cx.chain, Comment: own + "policy drop", Verdict: Verdict{Target: "DROP"}})
	}
}

func (cx chainCtx) userRules(us []model.Rule) ([]Rule, error) {
	var rs []Rule
	for i, u := range us {
		if !cx.fam.Renders(u) {
			continue
		}
		if u.Group != "" {
			g, err := cx.groupCheck(u, i)
			if err != nil {
				return nil, err
			}
			rs = append(rs, g...)
			continue
		}
		if err := model.ValidateComment(u.Comment); err != nil {
			return nil, fmt.Errorf("rules.%s[%d].comment: %w", cx.dir, u.Place(i)-1, err)
		}
		comment := fmt.Sprintf("%s: %s rule %s", cx.owner, cx.dir, u.Number(i))
		if text := u.Text(); text != "" {
			comment += " " + text
		}
		r := Rule{Chain: cx.chain, Proto: u.Proto, Comment: comment, ICMPType: u.ICMPType}
		r.Src, r.SrcRange = u.Source.Prefix, u.Source.Range
		if u.Source.Set != "" {
			r.SetSrc = cx.fam.UserSet(u.Source.Set)
		}
		switch {
		case u.Iface == "":
		case cx.owner != OwnerHost:
			return nil, fmt.Errorf("rules.%s[%d].iface: only the host's rules match an interface", cx.dir, u.Place(i)-1)
		case cx.dir == "in":
			r.InIface = u.Iface
		default:
			r.OutIface = u.Iface
		}
		r.Dst, r.DstRange = u.Dest.Prefix, u.Dest.Range
		if u.Dest.Set != "" {
			r.SetDst = cx.fam.UserSet(u.Dest.Set)
		}
		if strings.Contains(u.SPort, ",") {
			r.SPorts = u.SPort
		} else {
			r.SPort = u.SPort
		}
		if strings.Contains(u.DPort, ",") {
			r.DPorts = u.DPort
		} else {
			r.DPort = u.DPort
		}
		switch u.Action {
		case model.Accept:
			r.Verdict = cx.allow
		case model.Reject:
			r.Verdict = Verdict{Target: "REJECT", RejectWith: cx.fam.RejectWith()}
			if u.Proto == "tcp" {
				r.Verdict.RejectWith = "tcp-reset"
			}
		case model.Drop:
			r.Verdict = Verdict{Target: "DROP"}
		default:
			return nil, fmt.Errorf("rules.%s[%d].action: unknown action %q", cx.dir, i, u.Action)
		}
		if u.Log {
			l := r
			l.Limit = cx.limit
			l.Verdict = cx.logVerdict(cx.logWhat(u, i), u.LogLevel)
			rs = append(rs, l)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// MaxLogPrefix is how long a log prefix may be, as the kernel allows.
const MaxLogPrefix = 29

// logWhat is what the log prefix of rule u, i-th of its list, says:
// "r3", "r3.2" for a part, or "r3" for a part where its number would not
// fit the prefix.
func (cx chainCtx) logWhat(u model.Rule, i int) string {
	what := "r" + u.Number(i)
	if len(LogPrefix(cx.logName, cx.dir, what)) > MaxLogPrefix {
		what, _, _ = strings.Cut(what, ".")
	}
	return what
}

// groupCheck is rule u, i-th of its list, that checks a security group
// in place, as the tap's groups are checked before its rules: IN jumps
// to the group's chain, which accepts; OUT jumps to it and, where the
// group allowed the packet (the mark the tap's chain cleared first), goes
// on as allowed.
func (cx chainCtx) groupCheck(u model.Rule, i int) ([]Rule, error) {
	if cx.dir == "" || cx.owner == OwnerHost || strings.HasPrefix(cx.owner, "+") {
		return nil, fmt.Errorf("rules.%s[%d].group: only a tap's rules check a group in place", cx.dir, i)
	}
	comment := func(allowed string) string {
		c := fmt.Sprintf("%s: %s rule %s group %s%s", cx.owner, cx.dir, u.Number(i), u.Group, allowed)
		if u.Comment != "" {
			c += ": " + u.Comment
		}
		return c
	}
	jump := Rule{Chain: cx.chain, Comment: comment(""), Verdict: Verdict{Target: GroupChain(u.Group, cx.dir)}}
	if cx.dir == "in" {
		return []Rule{jump}, nil
	}
	return []Rule{jump, {Chain: cx.chain, Mark: GroupMark, Comment: comment(" allowed"), Verdict: Verdict{Goto: true, Target: ChainGroupAllowed}}}, nil
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := append([]netip.Prefix(nil), ps...)
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	// Drop duplicates: a set holds each entry once.
	res := out[:0]
	for i, p := range out {
		if i == 0 || p != out[i-1] {
			res = append(res, p)
		}
	}
	return res
}
