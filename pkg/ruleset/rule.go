package ruleset

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Verdict is where a rule sends a packet.
type Verdict struct {
	Goto       bool   // -g instead of -j: a RETURN from Target skips the rest of this chain
	Target     string // ACCEPT, DROP, RETURN, REJECT, LOG or a chain
	RejectWith string // for REJECT: icmp-port-unreachable or tcp-reset
	LogPrefix  string // for LOG and NFLOG
	LogLevel   string // for LOG: a syslog level name, "" for warning
	NFLogGroup int    // for NFLOG
	XMark      string // for MARK: --set-xmark value/mask
}

// Physdev matches the bridge port a bridged packet came in or goes out by.
type Physdev struct {
	In, Out     string
	IsIn, IsOut bool
	IsBridged   bool
	Present     bool
}

// Rule is one iptables rule as data. String renders it exactly as
// iptables-save prints it, so wanted and installed rules compare as text.
type Rule struct {
	Chain    string
	Src, Dst netip.Prefix // zero: any
	SrcNeg   bool         // ! -s
	// SrcType matches the source address's type (-m addrtype):
	// BROADCAST.
	SrcType string
	// TCPFlags, when set, are -m tcp --tcp-flags MASK COMP: "FIN,SYN"
	// and "SYN" (flag names in the order iptables prints them, NONE for
	// none).
	TCPFlags [2]string
	// HashLimit, when set, matches packets over a per-source rate
	// (-m hashlimit --hashlimit-above ... --hashlimit-mode srcip).
	HashLimit *HashLimit
	// SrcRange and DstRange, when valid, match a range of addresses
	// (-m iprange).
	SrcRange, DstRange model.Range
	DstMask            netip.Addr // when valid, Dst's address is matched under this mask instead
	InIface            string
	OutIface           string
	// InIfaceNeg and OutIfaceNeg negate InIface and OutIface.
	InIfaceNeg, OutIfaceNeg bool
	Proto                   string // tcp, udp, icmp or a protocol number
	Physdev                 Physdev
	CtState                 string // INVALID or RELATED,ESTABLISHED
	MACSource               string // lower-case aa:bb:..
	MACNegate               bool
	SetSrc                  string
	SetSrcNeg               bool
	SetDst                  string
	SetDstNeg               bool
	SPort                   string // single port or a:b range
	DPort                   string
	SPorts                  string // multiport list
	DPorts                  string
	ICMPType                string // numeric: "8" or "3/3"
	Mark                    string // -m mark --mark value/mask
	HopLimit                int    // -m hl --hl-eq N (IPv6)
	TTL                     int    // -m ttl --ttl-eq N (IPv4)
	Limit                   string // e.g. 5/min
	LimitBurst              int
	Comment                 string
	Verdict                 Verdict
	noHash                  bool
}

// Spec renders the rule without "-A CHAIN", as iptables-save prints it:
// Args joined by spaces, the comment and the log prefix quoted.
func (r Rule) Spec() string {
	var b strings.Builder
	args := r.Args()
	for i, x := range args {
		if i > 0 {
			b.WriteByte(' ')
			if args[i-1] == "--comment" || args[i-1] == "--log-prefix" || args[i-1] == "--nflog-prefix" {
				x = quote(x)
			}
		}
		b.WriteString(x)
	}
	return b.String()
}

// Args is the rule's argument list after "-A CHAIN", in the order
// iptables-save prints it, values unquoted: the parts come in that order,
// each appending its options in that order.
func (r Rule) Args() []string {
	a := r.appendHeader(nil)
	a = r.appendRanges(a)
	if r.SrcType != "" {
		a = append(a, "-m", "addrtype", "--src-type", r.SrcType)
	}
	a = r.appendPhysdev(a)
	a = r.appendConntrack(a)
	a = r.appendMAC(a)
	a = r.appendSets(a)
	a = r.appendPorts(a)
	a = r.appendHashLimit(a)
	a = r.appendMarkAndLimits(a)
	a = r.appendComment(a)
	return r.appendTarget(a)
}

// appendHeader appends the matches on the IP header and the devices that
// need no -m: addresses, interfaces and the protocol.
func (r Rule) appendHeader(a []string) []string {
	if r.Src.IsValid() {
		a = appendNeg(a, r.SrcNeg, "-s", PrefixString(r.Src))
	}
	if r.DstMask.IsValid() {
		a = append(a, "-d", AddrString(r.Dst.Addr())+"/"+AddrString(r.DstMask))
	} else if r.Dst.IsValid() {
		a = append(a, "-d", PrefixString(r.Dst))
	}
	if r.InIface != "" {
		a = appendNeg(a, r.InIfaceNeg, "-i", r.InIface)
	}
	if r.OutIface != "" {
		a = appendNeg(a, r.OutIfaceNeg, "-o", r.OutIface)
	}
	if r.Proto != "" {
		a = append(a, "-p", r.Proto)
	}
	return a
}

// HashLimit is a per-source rate limit, matching what is above it.
type HashLimit struct {
	Rate, Burst int // packets a second, at once
	Name        string
	SrcMask     int // the source's bits that count (0: all)
}

// appendHashLimit appends the per-source rate match, as iptables-save
// prints it.
func (r Rule) appendHashLimit(a []string) []string {
	h := r.HashLimit
	if h == nil {
		return a
	}
	a = append(a, "-m", "hashlimit", "--hashlimit-above", strconv.Itoa(h.Rate)+"/sec", "--hashlimit-burst", strconv.Itoa(h.Burst),
		"--hashlimit-mode", "srcip", "--hashlimit-name", h.Name)
	if h.SrcMask != 0 {
		a = append(a, "--hashlimit-srcmask", strconv.Itoa(h.SrcMask))
	}
	return a
}

// appendNeg appends an option and its value, negated by "!" first.
func appendNeg(a []string, neg bool, opt, v string) []string {
	if neg {
		a = append(a, "!")
	}
	return append(a, opt, v)
}

// appendRanges appends the address range match.
func (r Rule) appendRanges(a []string) []string {
	if !r.SrcRange.IsValid() && !r.DstRange.IsValid() {
		return a
	}
	a = append(a, "-m", "iprange")
	if r.SrcRange.IsValid() {
		a = append(a, "--src-range", r.SrcRange.String())
	}
	if r.DstRange.IsValid() {
		a = append(a, "--dst-range", r.DstRange.String())
	}
	return a
}

// appendPhysdev appends the bridge port match.
func (r Rule) appendPhysdev(a []string) []string {
	p := r.Physdev
	if !p.Present {
		return a
	}
	a = append(a, "-m", "physdev")
	if p.In != "" {
		a = append(a, "--physdev-in", p.In)
	}
	if p.Out != "" {
		a = append(a, "--physdev-out", p.Out)
	}
	if p.IsIn {
		a = append(a, "--physdev-is-in")
	}
	if p.IsOut {
		a = append(a, "--physdev-is-out")
	}
	if p.IsBridged {
		a = append(a, "--physdev-is-bridged")
	}
	return a
}

// appendConntrack appends the conntrack state match.
func (r Rule) appendConntrack(a []string) []string {
	if r.CtState == "" {
		return a
	}
	return append(a, "-m", "conntrack", "--ctstate", r.CtState)
}

// appendMAC appends the MAC source match.
func (r Rule) appendMAC(a []string) []string {
	if r.MACSource == "" {
		return a
	}
	a = append(a, "-m", "mac")
	if r.MACNegate {
		a = append(a, "!")
	}
	return append(a, "--mac-source", strings.ToLower(r.MACSource))
}

// appendSets appends the ipset matches, the source's before the
// destination's.
func (r Rule) appendSets(a []string) []string {
	a = appendSet(a, r.SetSrc, r.SetSrcNeg, "src")
	return appendSet(a, r.SetDst, r.SetDstNeg, "dst")
}

// appendSet appends a match on set name (none when name is empty) for the
// address dir (src or dst).
func appendSet(a []string, name string, neg bool, dir string) []string {
	if name == "" {
		return a
	}
	a = append(a, "-m", "set")
	if neg {
		a = append(a, "!")
	}
	return append(a, "--match-set", name, dir)
}

// appendPorts appends the protocol's matches: the tcp or udp ports, the
// multiport lists and the ICMP or ICMPv6 type.
func (r Rule) appendPorts(a []string) []string {
	if r.SPort != "" || r.DPort != "" || r.TCPFlags[0] != "" {
		a = append(a, "-m", r.Proto)
		if r.SPort != "" {
			a = append(a, "--sport", r.SPort)
		}
		if r.DPort != "" {
			a = append(a, "--dport", r.DPort)
		}
		if r.TCPFlags[0] != "" {
			a = append(a, "--tcp-flags", r.TCPFlags[0], r.TCPFlags[1])
		}
	}
	if r.SPorts != "" {
		a = append(a, "-m", "multiport", "--sports", r.SPorts)
	}
	if r.DPorts != "" {
		a = append(a, "-m", "multiport", "--dports", r.DPorts)
	}
	if r.ICMPType != "" {
		if r.Proto == model.ProtoICMPv6 {
			a = append(a, "-m", "icmp6", "--icmpv6-type", r.ICMPType)
		} else {
			a = append(a, "-m", "icmp", "--icmp-type", r.ICMPType)
		}
	}
	return a
}

// appendMarkAndLimits appends the matches on the packet's mark, its hop
// limit (IPv6) or TTL (IPv4), and the rate limit.
func (r Rule) appendMarkAndLimits(a []string) []string {
	if r.Mark != "" {
		a = append(a, "-m", "mark", "--mark", r.Mark)
	}
	if r.HopLimit != 0 {
		a = append(a, "-m", "hl", "--hl-eq", strconv.Itoa(r.HopLimit))
	}
	if r.TTL != 0 {
		a = append(a, "-m", "ttl", "--ttl-eq", strconv.Itoa(r.TTL))
	}
	if r.Limit != "" {
		a = append(a, "-m", "limit", "--limit", r.Limit)
		if r.LimitBurst != 0 && r.LimitBurst != 5 {
			a = append(a, "--limit-burst", strconv.Itoa(r.LimitBurst))
		}
	}
	return a
}

// appendComment appends the comment as installed, with the rule's hash.
func (r Rule) appendComment(a []string) []string {
	c := r.comment()
	if c == "" {
		return a
	}
	return append(a, "-m", "comment", "--comment", c)
}

// appendTarget appends -j or -g and the target's options.
func (r Rule) appendTarget(a []string) []string {
	v := r.Verdict
	if v.Goto {
		a = append(a, "-g", v.Target)
	} else {
		a = append(a, "-j", v.Target)
	}
	switch v.Target {
	case "REJECT":
		with := v.RejectWith
		if with == "" {
			with = IPv4.RejectWith()
		}
		a = append(a, "--reject-with", with)
	case "LOG":
		a = append(a, "--log-prefix", v.LogPrefix)
		if n := model.LogLevelNumber(v.LogLevel); n >= 0 && v.LogLevel != model.DefaultLogLevel {
			a = append(a, "--log-level", strconv.Itoa(n))
		}
	case "MARK":
		a = append(a, "--set-xmark", v.XMark)
	case "NFLOG":
		a = append(a, "--nflog-prefix", v.LogPrefix)
		if v.NFLogGroup != 0 {
			a = append(a, "--nflog-group", strconv.Itoa(v.NFLogGroup))
		}
	}
	return a
}

// comment is the comment as installed: the rule's own comment and a hash
// of the whole rule, so a reader that sees only comments (nftables over
// netlink) still notices any change of the rule.
func (r Rule) comment() string {
	if r.Comment == "" || r.noHash {
		return r.Comment
	}
	bare := r
	bare.noHash = true
	sum := sha256.Sum256([]byte(bare.Spec()))
	return r.Comment + " #" + hex.EncodeToString(sum[:4])
}

// StripHash takes the rule hash that comment() appends (" #" and eight
// hexadecimal digits) off an installed comment; a comment without one is
// returned as it is.
func StripHash(c string) string {
	n := len(c) - len(" #12345678")
	if n < 0 || c[n:n+2] != " #" {
		return c
	}
	for _, r := range c[n+2:] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return c
		}
	}
	return c[:n]
}

// InstalledComment is the comment as it is installed in the kernel.
func (r Rule) InstalledComment() string { return r.comment() }

// String renders the rule as an iptables-save line: "-A CHAIN spec".
func (r Rule) String() string { return "-A " + r.Chain + " " + r.Spec() }

// Owner is the owner named at the start of the rule's comment: a tap or
// bridge name, or one of the Owner* constants.
func (r Rule) Owner() string { return CommentOwner(r.Comment) }

// CommentOwner returns the owner part of a tapfw comment ("tap110i0: ...").
func CommentOwner(comment string) string {
	if i := strings.IndexByte(comment, ':'); i > 0 {
		return comment[:i]
	}
	return ""
}

// quote mimics xtables_save_string: bare when the value holds only letters,
// digits, '_' and '-'; otherwise in double quotes. tapfw never writes quotes
// or backslashes (validation keeps them out), so no escaping is needed.
func quote(s string) string {
	if s == "" {
		return `""`
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return `"` + s + `"`
		}
	}
	return s
}
