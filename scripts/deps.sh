#!/usr/bin/env bash
# Installs what tapfw's build, tests and demo need on a fresh Debian host:
# iptables (nft and legacy), ipset and iproute2. Quiet when all is there.
set -euo pipefail
need=()
for cmd in iptables:iptables iptables-legacy:iptables ipset:ipset ip:iproute2; do
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
