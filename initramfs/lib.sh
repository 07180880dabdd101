# initramfs/lib.sh: shell functions shared by build.sh (the busybox lab image)
# and debian-image.sh (Debian systemd images). Sourced, not run.
#
# The caller sets $cache (directory of downloaded .debs) and $LOG_PREFIX.

log() { printf '%s: %s\n' "${LOG_PREFIX:-initramfs}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_updated=0
# init_outdir sets here, repo, outdir (made, absolute) and cache (the .deb
# cache, made) from the script's one argument, OUTDIR.
init_outdir() {
	[ $# -eq 1 ] || die "usage: $0 OUTDIR"
	here=$(cd "$(dirname "$0")" && pwd)
	repo=$(cd "$here/.." && pwd)
	outdir=$1
	mkdir -p "$outdir"
	outdir=$(cd "$outdir" && pwd)
	cache=${WW_CACHE:-$repo/build/cache/debs}
	mkdir -p "$cache"
}

apt_update_once() {
	if [ "$apt_updated" = 0 ]; then
		apt_updated=1
		if [ "$(id -u)" = 0 ]; then
			log "apt-get update"
			apt-get update -qq >&2 || log "warning: apt-get update failed"
		else
			log "warning: not root, cannot apt-get update"
		fi
	fi
}

# need_pkgs CMD:PACKAGE...: installs PACKAGE when CMD is not on the PATH.
need_pkgs() {
	local missing=() cp
	for cp in "$@"; do
		command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp#*:}")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || die "missing ${missing[*]} and not root to install it"
		apt_update_once
		log "apt-get install -y ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
	fi
}

# candidate_record NAME: apt's record of the candidate version of package NAME
# (from the local lists; apt-get update once if they do not know it)
candidate_record() {
	local r
	r=$(apt-cache show --no-all-versions "$1" 2>/dev/null || true)
	if ! grep -q "^Version: " <<<"$r"; then
		apt_update_once
		r=$(apt-cache show --no-all-versions "$1" 2>/dev/null || true)
	fi
	grep -q "^Version: " <<<"$r" || die "no candidate version for package $1"
	printf '%s\n' "$r"
}

# debpath NAME[:ARCH] VERSION: the cached .deb's path (ARCH default amd64).
debpath() {
	local name=${1%%:*} arch=amd64
	[ "$name" = "$1" ] || arch=${1#*:}
	printf '%s/%s_%s_%s.deb\n' "$cache" "$name" "${2//:/%3a}" "$arch"
}

# fetch NAME[:ARCH] VERSION -> prints path of the cached .deb (a foreign
# ARCH needs dpkg --add-architecture ARCH and apt-get update first)
fetch() {
	local name=$1 ver=$2 f tmp got
	f=$(debpath "$name" "$ver")
	if [ ! -s "$f" ]; then
		tmp=$(mktemp -d "$cache/.dl.XXXXXX")
		log "apt-get download $name=$ver"
		(cd "$tmp" && apt-get download -qq "$name=$ver" >&2 2>/dev/null) ||
			(apt_update_once && cd "$tmp" && apt-get download -qq "$name=$ver" >&2) ||
			{ rm -rf "$tmp"; die "apt-get download $name=$ver failed"; }
		got=$(ls "$tmp"/*.deb)
		mv "$got" "$f"
		rm -rf "$tmp"
	fi
	got=$(dpkg-deb -f "$f" Version)
	[ "$got" = "$ver" ] || die "$f: version $got, want $ver"
	printf '%s\n' "$f"
}

# resolve_kernel [ARCH]: sets kpkg and kver to the kernel package
# linux-image-ARCH depends on (the lab kernel; ARCH default amd64) and its
# candidate version. A foreign ARCH's kpkg is qualified (NAME:arm64).
resolve_kernel() {
	local arch=${1:-amd64} meta q=""
	[ "$arch" = amd64 ] || q=":$arch"
	meta=$(candidate_record "linux-image-$arch$q")
	kpkg=$(printf '%s\n' "$meta" | sed -n 's/^Depends: //p' | head -n1 |
		tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -E "^linux-image-[0-9].*-$arch\$" | head -n1)
	[ -n "$kpkg" ] || die "cannot find the kernel package linux-image-$arch depends on"
	kpkg=$kpkg$q
	kver=$(candidate_record "$kpkg" | sed -n 's/^Version: //p')
}

# foreign_arch ARCH: makes sure dpkg knows ARCH (apt-get download of its
# packages), adding it and updating apt's lists once if not (root only).
foreign_arch() {
	[ "$1" = "$(dpkg --print-architecture)" ] && return 0
	dpkg --print-foreign-architectures | grep -qx "$1" && return 0
	[ "$(id -u)" = 0 ] || die "dpkg does not know architecture $1: run dpkg --add-architecture $1 && apt-get update as root"
	log "dpkg --add-architecture $1"
	dpkg --add-architecture "$1"
	apt_updated=0
	apt_update_once
}

# The NIC drivers every node image carries (QEMU's and the common real
# ones Debian builds as modules), plus virtio_pci which virtio_net needs.
NIC_MODULES="virtio_net virtio_pci e1000 e1000e 8139too 8139cp igb vmxnet3"
# arm64 (QEMU virt's virtio-net-pci, common server NICs). virtio_net pulls
# in failover and net_failover, virtio_pci virtio_pci_legacy_dev and
# virtio_pci_modern_dev: all modules in Debian's arm64 kernel.
NIC_MODULES_ARM64="virtio_net virtio_pci e1000e igb"

# copy_modules KROOT KV ROOT MODULE...: copies the dependency closure of the
# modules from the unpacked kernel package KROOT into ROOT/lib/modules/KV
# and runs depmod there. Prints the modules copied.
copy_modules() {
	local kroot=$1 kv=$2 root=$3 m out rel ko
	shift 3
	local kmods=$kroot/lib/modules/$kv mdir=$root/lib/modules/$kv list
	list=$(mktemp)
	[ -f "$kmods/modules.dep" ] || depmod -b "$kroot" "$kv"
	mkdir -p "$mdir"
	for m in "$@"; do
		out=$(modprobe -d "$kroot" -S "$kv" --show-depends "$m") ||
			{ rm -f "$list"; die "module $m not found in kernel $kv"; }
		printf '%s\n' "$out" >>"$list"
	done
	sed -n 's/^insmod //p' "$list" | awk '{print $1}' | sort -u | while read -r ko; do
		rel=${ko#"$kmods/"}
		mkdir -p "$mdir/$(dirname "$rel")"
		cp -p "$ko" "$mdir/$rel"
	done
	rm -f "$list"
	cp -p "$kmods/modules.builtin" "$kmods/modules.builtin.modinfo" "$mdir/"
	(cd "$mdir" && find kernel -name '*.ko' | sort) >"$mdir/.subset"
	grep -Fx -f "$mdir/.subset" "$kmods/modules.order" >"$mdir/modules.order" || true
	tr '\n' ' ' <"$mdir/.subset"
	rm -f "$mdir/.subset"
	depmod -b "$root" "$kv"
}
