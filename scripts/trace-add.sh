#!/bin/bash
# Traces the plugin's ADD and DEL at N installed taps: installs N taps with
# the benchmark's seed-like config in a sandbox network namespace of its
# own (removed on exit), then runs T more ADDs and DELs with TAPFW_TRACE=1
# and prints each call's wall time (ip netns exec included, about 5 ms
# here) and the mean of every traced step. As root, after make build:
#
#	scripts/trace-add.sh 4000 8        # TAPFW_BACKEND=iptables for the other backend
set -euo pipefail
N=${1:?usage: trace-add.sh N [T]}
T=${2:-5}
ns=tfwtrace-$$
dir=$(mktemp -d)
plugin=$(cd "$(dirname "$0")/.." && pwd)/bin/tapfw
ip netns add "$ns"
trap 'ip netns delete "$ns"; rm -rf "$dir"' EXIT INT TERM
ip -n "$ns" link add vmbr0 type bridge
ip -n "$ns" link set vmbr0 up
export ns dir plugin
conf() { # mac ip
	cat <<J
{"cniVersion":"1.0.0","name":"bench","type":"tapfw","ipsets":{"admins":["203.0.113.0/28"]},
"host":{"ips":["192.0.2.1"],"clusterHosts":["192.0.2.2","203.0.113.1"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"},{"action":"ACCEPT","proto":"tcp","dport":"8006"}],"out":[{"action":"ACCEPT","proto":"tcp","dport":"22"}]}},
"bridge":"vmbr0","mac":"$1","ips":["$2"],
"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22","source":"+admins"},{"action":"ACCEPT","proto":"tcp","dport":"80,443"},{"action":"ACCEPT","proto":"tcp","dport":"8000:8100"},{"action":"ACCEPT","proto":"udp","dport":"53","source":"198.51.100.0/24"},{"action":"ACCEPT","proto":"icmp","icmpType":"echo-request"},{"action":"DROP","proto":"tcp","dport":"3389","log":true},{"action":"REJECT","proto":"udp","dport":"161"},{"action":"ACCEPT","proto":"tcp","dport":"5432","source":"192.0.2.0/24"}],
"out":[{"action":"ACCEPT","proto":"udp","dport":"53"},{"action":"ACCEPT","proto":"tcp","dport":"80,443"},{"action":"REJECT","proto":"tcp","dport":"25"},{"action":"ACCEPT","proto":"icmp"},{"action":"ACCEPT","proto":"tcp","dport":"22","dest":"+admins"},{"action":"ACCEPT","proto":"udp","dport":"123"},{"action":"ACCEPT","proto":"tcp","dport":"3306","dest":"198.51.100.0/24"},{"action":"DROP","proto":"tcp","dport":"6667","log":true}]}}
J
}
call() { # command i [env...]
	local cmd=$1 i=$2
	shift 2
	local name=tap$((1000 + i))i0
	local mac
	mac=$(printf '02:00:%02x:%02x:%02x:%02x' $((i >> 24 & 255)) $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255)))
	conf "$mac" "198.51.100.$((i % 254 + 1))" | env CNI_COMMAND="$cmd" CNI_CONTAINERID="vm$i" CNI_IFNAME="$name" \
		CNI_NETNS="/var/run/netns/$ns" CNI_NETNS_OVERRIDE=1 CNI_PATH="$(dirname "$plugin")" CNI_ARGS= \
		TAPFW_LOCK="$dir/lock" TAPFW_BACKEND="${TAPFW_BACKEND:-nftables}" "$@" ip netns exec "$ns" "$plugin" >/dev/null
}
export -f call conf
start=$(date +%s)
seq 0 $((N - 1)) | xargs -P 2 -I{} bash -c 'call ADD {}'
echo "installed $N taps in $(($(date +%s) - start)) s"
for cmd in ADD DEL; do
	for k in $(seq 1 "$T"); do
		s=$(date +%s%N)
		call "$cmd" $((N + k)) TAPFW_TRACE=1 2>>"$dir/trace.$cmd"
		echo "$cmd $((N + k)): $((($(date +%s%N) - s) / 1000)) us"
	done
	awk -v cmd="$cmd" '{v=$NF=="ms"?$(NF-1):$NF; sub(/^tapfw: /,""); name=$0; sub(/ +[0-9.]+ ms$/,"",name); s[name]+=v; n[name]++}
		END {for (k in s) printf "%s mean %-10s %6.2f ms\n", cmd, k, s[k]/n[k]}' "$dir/trace.$cmd" | sort
done
