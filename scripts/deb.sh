#!/usr/bin/env bash
# Builds the Debian package bin/tapfw_<version>_<arch>.deb with dpkg-deb,
# which every Debian host has (no packaging tool to install, and the
# package's every file and field is written here, in one place):
#
#   /usr/lib/cni/tapfw           the plugin and operator tool (static);
#                                postinst links /opt/cni/bin/tapfw to it
#                                (a package may not ship files in /opt)
#   /usr/lib/tapfw/qemu-ifup, qemu-ifdown   the QEMU and LXC scripts
#   /lib/systemd/system/tapfw-apply.path, .service, tapfw-ui.service   when contrib/systemd has them
#   /etc/tapfw/tapfw.conf        an example base config (a conffile)
#   /usr/share/man/man8/tapfw.8.gz   from `tapfw man`, the command table
#   /usr/share/doc/tapfw/        README.md, copyright, changelog.gz
#
# The version is $TAPFW_VERSION, else 0.0~gitYYYYMMDD.<commit>; file times
# and the page's date are the last commit's (SOURCE_DATE_EPOCH), so two
# builds of one commit are the same bytes. Usage: scripts/deb.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bin}

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
version=${TAPFW_VERSION:-}
if [ -z "$version" ]; then
	commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
	version="0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$commit"
fi
arch=$(dpkg --print-architecture)
maintainer=$(sed -n 's/^Maintainer: //p' contrib/deb/control)

root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
umask 022

CGO_ENABLED=0 GOARCH=$(go env GOARCH) go build -trimpath -ldflags="-s -w -buildid=" -o "$root/usr/lib/cni/tapfw" ./plugins/tapfw
install -D -m 0755 scripts/qemu-ifup "$root/usr/lib/tapfw/qemu-ifup"
install -D -m 0755 scripts/qemu-ifdown "$root/usr/lib/tapfw/qemu-ifdown"
for unit in contrib/systemd/*; do
	[ -e "$unit" ] || continue
	install -D -m 0644 "$unit" "$root/lib/systemd/system/$(basename "$unit")"
done
install -D -m 0644 contrib/tapfw.conf "$root/etc/tapfw/tapfw.conf"
install -d -m 0755 "$root/etc/tapfw/nics"
install -d -m 0755 "$root/usr/share/man/man8"
"$root/usr/lib/cni/tapfw" man | gzip -9n >"$root/usr/share/man/man8/tapfw.8.gz"

doc=$root/usr/share/doc/tapfw
install -D -m 0644 contrib/deb/copyright "$doc/copyright"
install -m 0644 README.md "$doc/README.md"
# Go links statically, as the reference CNI plugins are built: the plugin
# runs on any host, and starts 1.5 ms sooner.
install -D -m 0644 /dev/stdin "$root/usr/share/lintian/overrides/tapfw" <<<"tapfw: statically-linked-binary [usr/lib/cni/tapfw]"
{
	echo "tapfw ($version) unstable; urgency=medium"
	echo
	echo "  * Built from commit ${commit:-$version}."
	echo
	echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"

install -d -m 0755 "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" contrib/deb/control >"$root/DEBIAN/control"
echo /etc/tapfw/tapfw.conf >"$root/DEBIAN/conffiles"
install -m 0755 contrib/deb/postinst contrib/deb/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb=$out/tapfw_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
