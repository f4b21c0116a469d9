// Package ruleset renders what a tap needs in the kernel for the iptables
// backend: from a validated model.Config (one tap, its bridge, the
// host-wide parts the call carries) Build makes a Plan, the chains, rules,
// trie paths and ipsets tapfw wants, as data. It is pure: no I/O, no
// kernel, so every line it writes is checked against golden files.
//
// # The model
//
// Every packet of a VM meets exactly one pair of chains, its tap's own
// TFW-T-<tap>-OUT (from the VM; an allowed packet RETURNs, so the
// receiver's chain still runs) and TFW-T-<tap>-IN (to the VM; an allowed
// packet is ACCEPTed). The shared chains only find that pair: TFW-FORWARD
// (hooked at the top of FORWARD) sends bridged packets to their bridge's
// TFW-B-<br>, which dispatches by port through tries of chains (TFW-DI-*
// on the port in, TFW-DO-* on the port out) ending in a goto to the tap's
// chain; TFW-INPUT and TFW-OUTPUT do the same for the host's own packets
// (TFW-DH-* dispatches by destination address), with the host firewall
// in TFW-HOST-IN/OUT; a packet routed to or from a bridge port meets the
// tails of TFW-FORWARD (TFW-DI, then TFW-ROUTED). Security groups are
// shared chains TFW-G-<name>-IN/OUT that the taps using them jump to.
// docs/design.md draws the whole layout.
//
// # Design goals
//
//   - A call changes only its tap's paths. A trie's shape follows from the
//     keys alone (a node per name prefix, an edge per next character), so
//     an ADD adds chains and rules on its tap's paths, a DEL deletes its
//     leaves and the nodes left empty, and neither reads anything else. A
//     new packet is checked against a few rules per trie level, not one
//     rule per tap.
//   - Nothing of anyone else is touched: every chain starts with
//     ChainPrefix, every set with SetPrefix (IPv6: SetPrefix6), and every
//     comment starts with its owner ("tap110i0: ", "vmbr0: ", "@tapfw: ",
//     "+web: "), which is how DEL and GC find a tap's rules without a
//     state file. The tap's IN leaf records who attached it
//     (DispatchComment); its OUT leaf records its MAC (OutLeafComment).
//   - Wanted state is comparable with installed state as text: Rule.Spec
//     renders a rule exactly as iptables-save prints it, and every comment
//     ends in a hash of its whole rule, so a reader that sees only comments
//     (nftables over netlink) still tells whether a rule is the one wanted
//     (see StripHash).
//   - Anti-spoofing comes before any shortcut: a tap's OUT chain checks
//     conntrack INVALID, the MAC, DHCP and the source address before it
//     accepts RELATED,ESTABLISHED packets.
//   - Names fit the kernel's limits (28-character chains, 31-character
//     sets, 29-character log prefixes, nf_tables' jump depth of 16): long
//     names are bounded (MaxTrieDepth) or refused (Limits), never cut.
//
// # How a call uses it
//
// Build(cfg) validates the names once more (checkLimits), then renders the
// IPv4 plan, the layer-2 part (BuildL2: set elements of the bridge table)
// and the IPv6 plan (Plan.V6), each family with the same chains in its own
// table (see Family). A Plan says how each part must be kept: Owned chains
// exactly as given, Shared chains rewritten when they differ, Base chains
// only created when missing, Members replaced per owner inside shared
// chains, Hooks kept at the top of the built-in chains, Tails kept last,
// Paths added edge by edge, Sets exactly, BaseSets only present.
// pkg/netfilter reads the installed state, works out the difference and
// applies it in one transaction per table.
package ruleset
