// Package model holds what a validated configuration says, in no backend's
// terms: a tap's identity and options, its rules, security groups, named
// sets, its bridge and the host firewall. pkg/config produces it; every
// backend (pkg/ruleset renders it for iptables) takes it as input.
//
// Names and values here are checked for what any backend needs (an
// interface name the kernel accepts, characters a rule may carry, a
// comment's length); limits that come from one backend (how long a set or
// group name, a network name or a container ID it records may be) are that
// backend's Limits.
package model

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Action is what a user rule or a policy does with a packet.
type Action string

// The actions a user may name.
const (
	Accept Action = "ACCEPT"
	Drop   Action = "DROP"
	Reject Action = "REJECT"
)

// Addr is a rule's source or destination: a prefix, a range or a named
// set.
type Addr struct {
	Prefix netip.Prefix // valid when the rule matches an address or network
	Range  Range        // valid when it matches a range that is no prefix
	Set    string       // the config's name of a named set
	// Family, when set, is the family (IPv4 or IPv6) whose every
	// address matches: 0.0.0.0/0 or ::/0.
	Family string
}

// Range is the addresses First to Last, both included, of one family.
type Range struct{ First, Last netip.Addr }

// IsValid reports whether the range is set.
func (r Range) IsValid() bool { return r.First.IsValid() }

// String is the range as the config and iptables write it: "A-B".
func (r Range) String() string { return r.First.String() + "-" + r.Last.String() }

// Contains reports whether a is in the range.
func (r Range) Contains(a netip.Addr) bool {
	return r.IsValid() && a.BitLen() == r.First.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// IsZero reports whether the address matches anything.
func (a Addr) IsZero() bool {
	return !a.Prefix.IsValid() && !a.Range.IsValid() && a.Set == "" && a.Family == ""
}

// FamilyName is the family the address limits a rule to, or "".
func (a Addr) FamilyName() string {
	switch {
	case a.Family != "":
		return a.Family
	case a.Range.IsValid() && a.Range.First.Is6():
		return IPv6
	case a.Range.IsValid():
		return IPv4
	case !a.Prefix.IsValid():
		return ""
	case a.Prefix.Addr().Is6():
		return IPv6
	}
	return IPv4
}

// The families, by name.
const (
	IPv4 = "ipv4"
	IPv6 = "ipv6"
)

// ProtoICMPv6 is ICMPv6 by its /etc/protocols name, as a Rule's Proto
// gives it.
const ProtoICMPv6 = "ipv6-icmp"

// Rule is one validated rule from the config. Ports are canonical
// ("22", "1000:2000" or "22,80,443"), ICMPType is numeric ("8", "3/3").
type Rule struct {
	Action   Action
	Proto    string
	Source   Addr
	Dest     Addr
	SPort    string
	DPort    string
	ICMPType string
	Log      bool
	// LogLevel is the syslog level of its log lines ("" for warning).
	LogLevel string
	Comment  string
	// Family, when set, limits the rule to that family where its
	// addresses and protocol do not (a macro's part for IPv6 only).
	Family string
	// Num is the rule's place in its list, 1-based, as the config
	// numbers it (0: its place in the model's list). Part, when not 0,
	// is which of the rules a config rule stands for this one is (a
	// macro's protocols, each address of a list), 1-based.
	Num, Part int
	// Macro is the macro the rule comes from ("SSH"), "" when none.
	Macro string
	// Iface, in a host rule, is the interface the packet arrives on (in)
	// or leaves by (out).
	Iface string
	// Group, when set, makes the rule a check of that security group at
	// its place in the list (a tap's rules only); it has no other field.
	Group string
	// InGroup is the security group whose rule this is, copied into a
	// list that checks the group in place (the host's rules).
	InGroup string
}

// Text is what the rule's kernel comment says after its number: the
// group it was copied from, its macro and its comment, "+web: SSH: admins
// only".
func (r Rule) Text() string {
	var parts []string
	if r.InGroup != "" {
		parts = append(parts, "+"+r.InGroup)
	}
	for _, p := range []string{r.Macro, r.Comment} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ": ")
}

// Place is the rule's 1-based place in its config list, i-th of the
// model's list: Num, or i+1 where the config did not number it.
func (r Rule) Place(i int) int {
	if r.Num == 0 {
		return i + 1
	}
	return r.Num
}

// Number is how the rule's place reads: "3", or "3.2" for its second
// part.
func (r Rule) Number(i int) string {
	n := r.Place(i)
	if r.Part == 0 {
		return strconv.Itoa(n)
	}
	return strconv.Itoa(n) + "." + strconv.Itoa(r.Part)
}

// Tap is everything tapfw knows about one VM NIC, validated.
type Tap struct {
	Name   string
	Bridge string
	MAC    net.HardwareAddr // nil when unknown (then MACFilter must be off)
	IPs    []netip.Prefix   // IPv4
	IPs6   []netip.Prefix   // IPv6 (layer-2 checks only, for now)

	// Who asked for it, recorded in the dispatch rule so DEL and GC can
	// find the tap without a state file.
	Network     string
	ContainerID string
	IfName      string

	MACFilter bool
	IPFilter  bool
	DHCP      bool
	// DHCPServers, when not empty, are the only sources DHCP and DHCPv6
	// replies may come from; empty is any server on the link.
	DHCPServers []Addr
	NDP         bool // neighbour discovery passes (its target checked)
	IGMP        bool // multicast group membership (IGMP, MLD) passes
	RAdv        bool // router advertisements from the VM pass
	// KeepEstablished keeps the tap's connections that its new rules no
	// longer allow when an ADD replaces its firewall; without it they are
	// cut (their conntrack entries deleted).
	KeepEstablished bool
	// L2Protocols, when not empty, are the only ethertypes the VM's
	// frames may have.
	L2Protocols []uint16
	// Pairs are the allowed address pairs of another MAC than MAC: the
	// guest may send from each pair's MAC with its addresses only (a
	// VRRP router's virtual MAC and address). Their addresses are in IPs
	// and IPs6 too; pairs of the tap's own MAC are only there.
	Pairs []Pair
	// Helpers are the conntrack helpers (ftp, tftp, sip) the tap's
	// connections get, so their data connections are RELATED.
	Helpers    []string
	LogDropped bool
	// LogLevelIn and LogLevelOut are the levels the policy of each
	// direction logs at: "" for LogDropped's default (warning, or no
	// line), NoLog for none, else a level of LogLevels.
	LogLevelIn, LogLevelOut string
	LogLimit                string // rate of log lines per rule: 5/min
	LogTarget               string // LOG (the kernel log) or NFLOG (a netlink group)
	// LogPerTap puts the tap's name in its log prefixes
	// (tfw:<tap>:<dir>:<what>); without it they are tfw:<dir>:<what> and
	// the line's ports name the tap. On nftables a prefix naming the tap
	// is an expression per tap, which every later commit validates.
	LogPerTap  bool
	NFLogGroup int // the NFLOG group
	PolicyIn   Action
	PolicyOut  Action
	// Groups are the security groups the tap uses, checked in this order
	// before its own rules.
	Groups  []string
	In, Out []Rule
}

// Helpers are the conntrack helpers a tap may name.
var Helpers = []string{"ftp", "tftp", "sip"}

// Pair is an allowed address pair: a MAC and its addresses.
type Pair struct {
	MAC net.HardwareAddr
	IPs []netip.Addr
}

// Group is a security group: rules defined once and shared by the taps
// that name it, rendered once as shared chains.
type Group struct {
	In, Out []Rule
}

// LogLevels are the syslog levels a log line may have, by number.
var LogLevels = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// DefaultLogLevel is the level of log lines, as iptables' LOG and nft's
// log have it.
const DefaultLogLevel = "warning"

// NoLog is the level that logs nothing, as Proxmox VE names it.
const NoLog = "nolog"

// LogLevelNumber is the number of level, or -1 for no level.
func LogLevelNumber(level string) int {
	for i, l := range LogLevels {
		if l == level {
			return i
		}
	}
	return -1
}

// PolicyLogLevel is the level a policy logs at, "" for no log line:
// level as a Tap's LogLevelIn gives it, with logDropped's default.
func PolicyLogLevel(level string, logDropped bool) string {
	switch {
	case level == NoLog:
		return ""
	case level != "":
		return level
	case logDropped:
		return DefaultLogLevel
	}
	return ""
}

// DefaultLogLimit is the rate of log lines when the config does not set
// one.
const DefaultLogLimit = "5/min"

// DefaultManagedPrefix is the port name prefix a fail-closed bridge
// expects to carry tapfw chains: QEMU's and Proxmox's tap names.
const DefaultManagedPrefix = "tap"

// Bridge is the per-bridge configuration.
type Bridge struct {
	Name         string
	AllowRouting bool
	// FailClosed drops traffic of ports whose names start with
	// ManagedPrefix but that have no tap chains (their ADD failed, was
	// killed, or has not run yet).
	FailClosed    bool
	ManagedPrefix string
	// IsolatePorts isolates the taps' bridge ports: guests reach the
	// uplink and the host, not each other.
	IsolatePorts bool
}

// Host is the host firewall: its addresses, the cluster's hosts and rules.
type Host struct {
	IPs          []netip.Prefix
	ClusterHosts []netip.Prefix
	In, Out      []Rule
	// LogLevelIn and LogLevelOut are as a Tap's, for the host's
	// policies.
	LogLevelIn, LogLevelOut string
	// AllLocal puts every address of the host but loopback's behind its
	// firewall, not only IPs.
	AllLocal bool
	// Management are the ports the management set reaches before any
	// host rule (anti-lockout): tcp 22 and those the config adds.
	Management []Ports
	// The protections, as Proxmox VE's host options: Smurfs drops IPv4
	// packets from broadcast and multicast sources (nosmurfs), TCPFlags
	// impossible TCP flag combinations (tcpflags), AllowInvalid keeps
	// conntrack's INVALID packets (nf_conntrack_allow_invalid).
	Smurfs, TCPFlags, AllowInvalid bool
	// SynFlood, when set, limits each source's new TCP connections to
	// the host (protection_synflood).
	SynFlood *SynFlood
}

// SynFlood is a per-source limit of TCP SYNs: Rate a second, Burst at
// once.
type SynFlood struct{ Rate, Burst int }

// Proxmox VE's SYN flood limit: 200 a second, bursts of 1000.
const (
	DefaultSynFloodRate  = 200
	DefaultSynFloodBurst = 1000
)

// Ports is a protocol's ports: "tcp" and "22,8006,5900:5999".
type Ports struct{ Proto, Ports string }

// The named sets with a meaning of their own, as Proxmox VE names them:
// sources in the management set reach the host's management ports before
// any host rule; sources in the blacklist set are dropped before anything
// else, by the host and by every guest.
const (
	SetManagement = "management"
	SetBlacklist  = "blacklist"
)

// DefaultManagement is the management port there always is: ssh.
var DefaultManagement = Ports{Proto: "tcp", Ports: "22"}

// Config is the input of a backend: one tap, its bridge, and the
// host-wide parts the call carries. Host nil means "leave the host
// firewall as it is".
type Config struct {
	Tap    Tap
	Bridge Bridge
	Host   *Host
	// Sets are the named address sets by their config name. Sets not
	// listed are left as they are.
	Sets map[string][]netip.Prefix
	// Groups are the security groups by name. Group chains not listed
	// are left as they are.
	Groups map[string]Group
}

// Attachment is who attached a tap: the network, container ID and
// interface name of the CNI call that added it (each "" when not known).
// A backend records it with the tap, so that DEL and GC find the tap
// without a state file.
type Attachment struct {
	Tap, Network, ContainerID, IfName string
}
