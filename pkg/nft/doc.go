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
//	  tfw-{i,o}{4,6}-<tap>       the tap's chains: package ruleset's tap chains, translated
//	  tfw-g{4,6}-<group>-{in,out} security groups; tfw-s{4,6}-<name> named sets
//	  tfw-rejected               REJECT: accepted on to the inet chains, or dropped
//	table inet tapfw
//	  tfw-ct-pre  prerouting -150, tfw-ct-out output -150: conntrack state into mark bits
//	  tfw-rej-fwd forward 0, tfw-rej-in input 0: answer what the bridge chains rejected
//
// The bridge family sees the port a packet comes in or goes out by, which
// the inet family (through br_netfilter) does not; the inet family has
// conntrack and REJECT, which the bridge family lacks on kernels without
// nf_conntrack_bridge and nft_reject_bridge. The mark bits (Marks) carry
// what one knows to the other.
package nft
