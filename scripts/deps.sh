#!/usr/bin/env bash
# Installs what tapfw's build, tests and demo need on a fresh Debian host:
# iptables (nft and legacy), ipset, iproute2, nftables (the bridge table),
# QEMU and iperf3 (make bench's established traffic), lintian and groff
# (the package's and the man page's tests) and chromium (the web
# console's browser test) from Debian; cnitool
# and the reference bridge and host-local plugins (CNI 1.1.0, for GC) from
# the Go module proxy into bin/cni/. Quiet when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for cmd in iptables:iptables iptables-legacy:iptables ipset:ipset ip:iproute2 nft:nftables qemu-system-x86_64:qemu-system-x86 dnsmasq:dnsmasq-base xz:xz-utils iperf3:iperf3 lintian:lintian groff:groff-base chromium:chromium; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

# Versions of the CNI tools the tests run against.
CNI_VERSION=v1.3.1
PLUGINS_VERSION=v1.9.1
mkdir -p bin/cni
gobin=$(pwd)/bin/cni
if [ ! -x bin/cni/cnitool ]; then
  echo "deps: go install cnitool@$CNI_VERSION" >&2
  GOBIN=$gobin go install "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
fi
if [ ! -x bin/cni/bridge ] || [ ! -x bin/cni/host-local ]; then
  echo "deps: go install bridge, host-local@$PLUGINS_VERSION" >&2
  GOBIN=$gobin go install "github.com/containernetworking/plugins/plugins/main/bridge@$PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$PLUGINS_VERSION"
fi
