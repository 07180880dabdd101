#!/bin/bash
# initramfs/bootloaders.sh OUTDIR
#
# Puts Debian's signed Secure Boot chain for x86-64 and arm64 UEFI into
# OUTDIR, for nodes with bootloader = "grub" and arm64 nodes (wwserver.toml
# [grub] shim/grub, shim_arm64/grub_arm64 point here in the lab; on a
# server, installing the packages puts them at the defaults):
#
#   OUTDIR/shimx64.efi.signed     package shim-signed (signed by Microsoft's UEFI CA)
#   OUTDIR/grubnetx64.efi.signed  package grub-efi-amd64-signed (signed by Debian's
#                                 key, which shim trusts): tftp, efinet and linux
#                                 built in (no http module)
#   OUTDIR/shimaa64.efi.signed    package shim-signed:arm64
#   OUTDIR/grubnetaa64.efi.signed package grub-efi-arm64-signed (arm64; the same
#                                 modules, no http)
#
# The arm64 packages need dpkg --add-architecture arm64 (done here once,
# as root, followed by apt-get update).
#
# The packages are downloaded (apt-get download) and unpacked with dpkg-deb,
# never installed: shim-signed's maintainer scripts would install a boot
# loader on this machine. The .debs are cached in $WW_CACHE (default
# build/cache/debs); nothing is done when OUTDIR matches the candidate
# versions (FORCE=1 redoes it).
set -euo pipefail

LOG_PREFIX=bootloaders
# shellcheck source=initramfs/lib.sh
. "$(dirname "$0")/lib.sh"

umask 022
export LC_ALL=C
init_outdir "$@"
need_pkgs dpkg-deb:dpkg
foreign_arch arm64

# package (NAME[:ARCH]), file in the package, name in OUTDIR
files=(
	"shim-signed usr/lib/shim/shimx64.efi.signed shimx64.efi.signed"
	"grub-efi-amd64-signed usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grubnetx64.efi.signed"
	"shim-signed:arm64 usr/lib/shim/shimaa64.efi.signed shimaa64.efi.signed"
	"grub-efi-arm64-signed:arm64 usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed grubnetaa64.efi.signed"
)
declare -A ver
resolve() {
	local f pkg
	for f in "${files[@]}"; do
		pkg=${f%% *}
		ver[$pkg]=$(candidate_record "$pkg" | sed -n 's/^Version: //p')
	done
}
stamp() {
	local f
	for f in "${files[@]}"; do printf '%s=%s\n' "${f%% *}" "${ver[${f%% *}]}"; done | cat - "$0" | sha256sum | cut -d' ' -f1
}
# have_outputs, have_debs: every file is in OUTDIR, every .deb in the cache
have_outputs() {
	local f
	for f in "${files[@]}"; do [ -s "$outdir/${f##* }" ] || return 1; done
}
have_debs() {
	local f
	for f in "${files[@]}"; do [ -s "$(debpath "${f%% *}" "${ver[${f%% *}]}")" ] || return 1; done
}
resolve
if [ "${FORCE:-0}" != 1 ] && have_outputs && [ "$(cat "$outdir/.stamp" 2>/dev/null)" = "$(stamp)" ]; then
	log "$outdir is up to date ($(for f in "${files[@]}"; do printf '%s %s; ' "${f%% *}" "${ver[${f%% *}]}"; done))"
	exit 0
fi
if ! have_debs; then
	apt_update_once # download the mirror's current versions
	resolve
fi

work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
i=0
for f in "${files[@]}"; do
	read -r pkg src dst <<<"$f"
	deb=$(fetch "$pkg" "${ver[$pkg]}")
	i=$((i + 1))
	dpkg-deb -x "$deb" "$work/$i"
	install -m 0644 "$work/$i/$src" "$outdir/$dst.new"
done
for f in "${files[@]}"; do
	dst=${f##* }
	mv "$outdir/$dst.new" "$outdir/$dst"
	log "$outdir/$dst (${f%% *} ${ver[${f%% *}]})"
done
stamp >"$outdir/.stamp"
