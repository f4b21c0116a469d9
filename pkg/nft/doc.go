// Package nft is tapfw's native nftables backend: it renders a tap's
// firewall as nftables chains, map elements and set elements, and applies
// them over netlink in one transaction per call.
//
// The layout (docs/design.md has the reasons and the measurements):
//
//	table bridge tapfw                          (shared with the layer-2 checks)
//	  tfw-pre     prerouting -200: layer-2 anti-spoofing (package ruleset)
//	  tfw-from    prerouting 200: meta protocol . iifname vmap @tfw-out  (the sender's OUT, once a frame)
//	  tfw-fwd     forward -200:   meta protocol . oifname vmap @tfw-in   (the receiver's IN, bridged)
//	  tfw-lout    output -200:    meta protocol . oifname vmap @tfw-in   (from the host, or routed)
//	  tfw-p{i,o}{4,6}-<hash>     profiles: package ruleset's tap chains, translated without
//	                             the tap (its MAC and addresses are looked up by port in the
//	                             layer-2 sets), shared by every tap whose rules hash the same
//	  tfw-p…-<hash>-l<k>         a profile's k-th log rule's rate set: each port's own limit
//	                             (logPrefix tap: a log map, port : jump the tap's log chain,
//	  tfw-l{i,o}{4,6}-<tap>-<what>  which holds the limit and the prefix naming the tap)
//	  tfw-r-<tap>                the tap's record: who attached it, its elements (never jumped to)
//	  tfw-anchors, tfw-anchor    an element per tap jumping to an empty chain: its use
//	                             count is the number of taps
//	  tfw-g{4,6}-<group>-{in,out} security groups; tfw-s{4,6}-<name> named sets
//	  tfw-rejected               REJECT: accepted on to the inet chains, or dropped
//	  tfw-version (both tables)  one rule whose comment is a hash of the skeleton
//	table inet tapfw
//	  tfw-ct-pre  prerouting -150, tfw-ct-out output -150: conntrack state into mark bits
//	  tfw-rej-fwd forward 0, tfw-rej-in input 0: answer what the bridge chains rejected
//
// The bridge family sees the port a packet comes in or goes out by, which
// the inet family (through br_netfilter) does not; the inet family has
// conntrack and REJECT, which the bridge family lacks on kernels without
// nf_conntrack_bridge and nft_reject_bridge. The mark bits (Marks) carry
// what one knows to the other.
//
// How a call works: ADD checks the skeleton (the version rules, then the
// static rules, about a dozen requests) and runs nft -f only when it is
// missing or differs; reads the tap's record; makes each of its profiles
// that is missing (or was changed by hand) with its rate sets or log maps;
// reads each element the tap wants or had, one request each, and changes
// those that differ; makes its log chains (logPrefix tap); takes the
// profiles no element jumps to any more away; and writes its layer-2
// elements and record, all in one transaction. DEL reads the record and takes out what it names. Nothing
// a call reads or writes grows with the number of taps but the kernel's
// walk over the map elements at commit.
package nft
