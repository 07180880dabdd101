#!/bin/bash
# initramfs/bootloaders.sh OUTDIR
#
# Puts Debian's signed Secure Boot chain for x86-64 UEFI into OUTDIR, for
# nodes with bootloader = "grub" (wwserver.toml [grub] shim/grub point here
# in the lab; on a server, installing the packages puts them at the
# defaults):
#
#   OUTDIR/shimx64.efi.signed     package shim-signed (signed by Microsoft's UEFI CA)
#   OUTDIR/grubnetx64.efi.signed  package grub-efi-amd64-signed (signed by Debian's
#                                 key, which shim trusts): tftp, efinet and linux
#                                 built in (no http module)
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

resolve() {
	shimver=$(candidate_record shim-signed | sed -n 's/^Version: //p')
	grubver=$(candidate_record grub-efi-amd64-signed | sed -n 's/^Version: //p')
}
stamp() { printf '%s\n' "shim-signed=$shimver" "grub-efi-amd64-signed=$grubver" | cat - "$0" | sha256sum | cut -d' ' -f1; }
resolve
if [ "${FORCE:-0}" != 1 ] && [ -s "$outdir/shimx64.efi.signed" ] && [ -s "$outdir/grubnetx64.efi.signed" ] &&
	[ "$(cat "$outdir/.stamp" 2>/dev/null)" = "$(stamp)" ]; then
	log "$outdir is up to date (shim-signed $shimver, grub-efi-amd64-signed $grubver)"
	exit 0
fi
if [ ! -s "$(debpath shim-signed "$shimver")" ] || [ ! -s "$(debpath grub-efi-amd64-signed "$grubver")" ]; then
	apt_update_once # download the mirror's current versions
	resolve
fi
shimdeb=$(fetch shim-signed "$shimver")
grubdeb=$(fetch grub-efi-amd64-signed "$grubver")

work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$shimdeb" "$work/shim"
dpkg-deb -x "$grubdeb" "$work/grub"
install -m 0644 "$work/shim/usr/lib/shim/shimx64.efi.signed" "$outdir/shimx64.efi.signed.new"
install -m 0644 "$work/grub/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" "$outdir/grubnetx64.efi.signed.new"
mv "$outdir/shimx64.efi.signed.new" "$outdir/shimx64.efi.signed"
mv "$outdir/grubnetx64.efi.signed.new" "$outdir/grubnetx64.efi.signed"
stamp >"$outdir/.stamp"
log "$outdir: shimx64.efi.signed (shim-signed $shimver), grubnetx64.efi.signed (grub-efi-amd64-signed $grubver)"
