#!/bin/bash
# tools/pkg/testroot.sh DIR
#
# A fresh Debian 12 root in DIR, for the package tests
# (integration/package_test.go): minbase plus what the wwserver package
# depends on (ipxe, procps), systemd (systemctl enable/disable offline, and
# systemd-analyze verify of the installed unit) and man-db (verify runs
# `man` for the unit's Documentation=man:...). Nothing of this repository
# is in it; the tests never write to it: each installs the built packages
# into an overlay (overlayfs) with DIR as its read-only lower layer.
#
# Cached: rebuilt only when this script changes (DIR.stamp) or FORCE=1.
# Downloaded .debs are kept in $WW_CACHE/mmdebstrap (default /var/cache/ww),
# outside the clone, so a rebuild downloads only what changed.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
want=$(sha256sum "$0" | cut -d' ' -f1)
if [ "${FORCE:-0}" != 1 ] && [ -d "$out/usr" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$want" ]; then
	echo "testroot: $out is up to date" >&2
	exit 0
fi
debcache=${WW_CACHE:-/var/cache/ww}/mmdebstrap
mkdir -p "$(dirname "$out")" "$debcache"
tmp=$out.tmp
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# sync-in/sync-out keep the downloaded .debs in $debcache.
mmdebstrap --variant=minbase --format=directory --include=ipxe,procps,systemd,man-db \
	--aptopt='Acquire::Retries "3"' \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
	--setup-hook="sync-in $debcache /var/cache/apt/archives/" \
	--customize-hook="sync-out /var/cache/apt/archives $debcache" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
	bookworm "$tmp" >&2
rm -rf "$out" "$out.stamp"
mv "$tmp" "$out"
printf '%s\n' "$want" >"$out.stamp"
echo "testroot: built $out ($(du -sh "$out" | cut -f1)) in $(($(date +%s) - start)) s" >&2
