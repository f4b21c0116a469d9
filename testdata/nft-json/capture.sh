#!/bin/sh
# Regenerates the nft -j listings in this directory: bin/tapfw (make build)
# installs the seed's taps, then the dual-stack ones, with the nftables
# backend in a throw-away network namespace, and `nft -j list ruleset` is
# saved after each. A foreign table (inet tfwx-foreign) stands for another
# tool's rules at the same hooks. Run as root from the repository's root:
#
#	testdata/nft-json/capture.sh
set -eu
ns=tfwx-cap-$$
out=testdata/nft-json
ip netns add "$ns"
trap 'ip netns delete "$ns"' EXIT INT TERM
inns() { ip netns exec "$ns" "$@"; }
inns ip link set lo up
inns sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
for br in vmbr0 vmbr1 vmbr6; do
	inns ip link add "$br" type bridge
	inns ip link set "$br" up
done
inns ip addr add 192.0.2.31/24 dev vmbr0
inns ip addr add 198.51.100.1/24 dev vmbr1
port() { # bridge port peer
	inns ip link add "$2" type veth peer name "$3"
	inns ip link set "$2" master "$1" up
	inns ip link set "$3" up
}
port vmbr0 uplink0 up0p
port vmbr0 tap110i0 v110
port vmbr0 tap123i0 v123
port vmbr1 tap115i0 v115
port vmbr6 tap201i0 v201
port vmbr6 tap202i0 v202
call() { # command dir tap
	id=vm$(echo "$3" | cut -c4-6)
	ip netns exec "$ns" env CNI_COMMAND="$1" CNI_CONTAINERID="$id" CNI_IFNAME="$3" \
		CNI_NETNS=/var/run/netns/"$ns" CNI_NETNS_OVERRIDE=1 CNI_PATH="$PWD/bin" CNI_ARGS= \
		TAPFW_BACKEND=nftables TAPFW_LOCK=/tmp/"$ns".lock bin/tapfw <testdata/"$2"/"$3".json >/dev/null
}
for tap in tap110i0 tap123i0 tap115i0; do call ADD seed "$tap"; done
inns nft -f - <<'NFT'
table inet tfwx-foreign {
	set blocked { type ipv4_addr; flags interval; counter; elements = { 203.0.113.128/25 } }
	chain filt { type filter hook forward priority -10; policy accept;
		ip daddr @blocked counter drop comment "foreign: blocked"
		tcp dport 2000-2010 counter reject comment "foreign: ports"
	}
}
NFT
inns nft -j list ruleset >"$out/seed.json"
inns nft list ruleset >"$out/seed.nft"
inns nft -f - <<'NFT'
delete table inet tfwx-foreign
NFT
for tap in tap110i0 tap123i0 tap115i0; do call DEL seed "$tap"; done
for tap in tap201i0 tap202i0; do call ADD dualstack "$tap"; done
inns nft -j list ruleset >"$out/dualstack.json"
inns nft list ruleset >"$out/dualstack.nft"
