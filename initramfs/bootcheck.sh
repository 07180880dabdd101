#!/bin/bash
# initramfs/bootcheck.sh OUTDIR [TIMEOUT_SECONDS]
#
# Boots OUTDIR/rootfs directly with QEMU (TCG, no network backend, no PXE):
# -kernel OUTDIR/rootfs/boot/vmlinuz-* and an initrd made of the rootfs plus a
# tiny /init used only by this check (mount, hostname "bootcheck", exec
# /sbin/init). Passes when the serial console shows "booted: node bootcheck";
# the console goes to OUTDIR/bootcheck.log. A virtio-net and an e1000 NIC
# without a backend are attached so the rcS module coldplug is exercised.
set -euo pipefail
log() { printf 'bootcheck: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ $# -ge 1 ] || die "usage: $0 OUTDIR [TIMEOUT_SECONDS]"
outdir=$(cd "$1" && pwd)
timeout=${2:-180}
rootfs=$outdir/rootfs
[ -d "$rootfs" ] || die "$rootfs missing: run initramfs/build.sh $1 first"

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
	log "apt-get install -y ${missing[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n1)
work=$(mktemp -d)
qpid=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/extra"
cat >"$work/extra/init" <<'EOF'
#!/bin/sh
# bootcheck only: what the wwclient bootstrap does in the real boot, minimally
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
hostname bootcheck
exec /sbin/init
EOF
chmod 0755 "$work/extra/init"
# newc archives can be concatenated: rootfs, then the check's /init
{
	(cd "$rootfs" && find . -path ./boot -prune -o -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
	(cd "$work/extra" && echo ./init | cpio -o -H newc -R 0:0 --quiet)
} | gzip -1 >"$work/initrd.gz"
log "initrd $(du -h "$work/initrd.gz" | cut -f1), kernel $(basename "$kernel")"

serial=$outdir/bootcheck.log
: >"$serial"
start=$(date +%s)
qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -nodefaults \
	-kernel "$kernel" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 no_timer_check" \
	-device virtio-net-pci,mac=52:54:00:99:00:01 -device e1000,mac=52:54:00:99:00:02 \
	-serial "file:$serial" -monitor none </dev/null &
qpid=$!
while :; do
	if grep -q 'booted: node bootcheck' "$serial"; then
		log "booted after $(($(date +%s) - start))s"
		grep -a -E '^(booted|nics):' "$serial" >&2 || true
		exit 0
	fi
	kill -0 "$qpid" 2>/dev/null || { tail -n 40 "$serial" >&2; die "QEMU exited before the booted line"; }
	[ $(($(date +%s) - start)) -lt "$timeout" ] || { tail -n 40 "$serial" >&2; die "no booted line after ${timeout}s"; }
	sleep 1
done
