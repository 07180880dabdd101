#!/bin/bash
# initramfs/debian-image.sh VARIANT OUTDIR
#
# Builds a Debian 12 (bookworm) node image tree OUTDIR/rootfs (to be used as
# images/NAME/rootfs in a wwserver tree) with mmdebstrap, booting the same
# kernel as the lab image (initramfs/build.sh: the package linux-image-amd64
# depends on, unpacked from its .deb, not installed, so no initramfs-tools).
#
# Variants:
#   systemd   minbase + systemd, systemd-sysv, udev, dbus, kmod, iproute2;
#             kernel modules: the NIC drivers of lib.sh (NIC_MODULES) only;
#             no manuals, docs or translations. About 200 MB.
#   selinux   systemd + selinux-policy-default, selinux-basics,
#             policycoreutils; /etc/selinux/config SELINUX=enforcing,
#             SELINUXTYPE=default. Labels are set on the node: the bootstrap
#             labels its tmpfs root from the policy's file_contexts (cpio
#             carries no xattrs, so labels made here would not travel).
#   net-nm, net-networkd  systemd + openssh-server, ping, the bonding and
#             8021q modules; net-nm also NetworkManager (make test-cluster).
#   hpc       systemd + every kernel module + a common HPC userland (Open MPI,
#             compilers, Python with NumPy/SciPy, Perl, Slurm and munge, RDMA
#             tools, OpenSSH, NFS client). A realistic 1–3 GB image with
#             tens of thousands of files, for load tests (make storm).
#
# Also written: OUTDIR/packages.txt (name version of every installed package)
# and OUTDIR/.stamp. The build is skipped when OUTDIR/rootfs matches the
# inputs: this script and lib.sh, the variant's package list, the kernel
# package version and the host's apt lists of the Debian mirror (apt-get
# update changes them). FORCE=1 rebuilds. Downloaded .debs are kept in
# $WW_CACHE/mmdebstrap (default build/cache/mmdebstrap), so a rebuild only
# downloads what changed. Timestamps: $SOURCE_DATE_EPOCH, default the kernel's
# vmlinuz mtime (mmdebstrap is reproducible with it).
#
# Environment: WW_CACHE (default build/cache), FORCE=1, SOURCE_DATE_EPOCH,
# WW_SUITE (default bookworm).
set -euo pipefail

LOG_PREFIX=debian-image
# shellcheck source=initramfs/lib.sh
. "$(dirname "$0")/lib.sh"

umask 022
export LC_ALL=C
[ $# -eq 2 ] || die "usage: $0 systemd|selinux|hpc OUTDIR"
variant=$1

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
outdir=$2
suite=${WW_SUITE:-bookworm}
cachetop=${WW_CACHE:-$repo/build/cache}
cache=$cachetop/debs         # the kernel .deb (shared with build.sh)
debcache=$cachetop/mmdebstrap # everything mmdebstrap downloads
mkdir -p "$cache" "$debcache"

base=systemd,systemd-sysv,udev,dbus,kmod,iproute2
case $variant in
systemd) pkgs=$base ;;
selinux) pkgs=$base,selinux-policy-default,selinux-basics,policycoreutils,selinux-utils ;;
hpc)
	pkgs=$base,openssh-server,openssh-client,ca-certificates,less,vim-tiny,procps,psmisc,curl,rsync
	pkgs=$pkgs,iputils-ping,ethtool,pciutils,lsof,strace,gdb,git,chrony,nfs-common,bash-completion
	pkgs=$pkgs,build-essential,gfortran,cmake,make,pkg-config,perl,python3,python3-numpy,python3-scipy
	pkgs=$pkgs,python3-mpi4py,openmpi-bin,libopenmpi-dev,hwloc,numactl,libnuma-dev
	pkgs=$pkgs,rdma-core,ibverbs-utils,infiniband-diags,libfabric1,libhdf5-openmpi-dev,libopenblas0
	pkgs=$pkgs,munge,slurmd,slurm-client,environment-modules
	;;
# make test-cluster: a node per network stack, with sshd (host keys) and the
# bonding and 802.1Q modules; net-networkd has neither NetworkManager nor
# ifupdown, so network_stack auto picks systemd-networkd
net-nm) pkgs=$base,network-manager,openssh-server,iputils-ping ;;
net-networkd) pkgs=$base,openssh-server,iputils-ping ;;
*) die "unknown variant $variant (systemd, selinux, hpc, net-nm or net-networkd)" ;;
esac
# The small images boot in QEMU tests: no manuals, docs or translations
# (copyright files stay). The hpc image keeps everything, as a site would.
dpkgopts=()
if [ "$variant" != hpc ]; then
	for p in /usr/share/man/ /usr/share/doc/ /usr/share/info/ /usr/share/locale/ /usr/share/lintian/; do
		dpkgopts+=("--dpkgopt=path-exclude=$p*")
	done
	dpkgopts+=("--dpkgopt=path-include=/usr/share/doc/*/copyright" "--dpkgopt=path-include=/usr/share/locale/locale.alias")
fi

need_pkgs mmdebstrap:mmdebstrap depmod:kmod modprobe:kmod dpkg-deb:dpkg
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
# Images carry Go sources (/usr/share/doc, /usr/lib/go…): a go.mod here keeps
# them out of `go test ./...` when OUTDIR is inside the repository.
printf 'module invalid.example/node-image // not Go code: a node image tree\n' >"$outdir/go.mod"

# apt_lists_digest: what the host's apt knows of the Debian mirror (the
# InRelease files change with every apt-get update that found news).
apt_lists_digest() {
	cat /var/lib/apt/lists/deb.debian.org_debian*InRelease 2>/dev/null | sha256sum | cut -d' ' -f1
}
stamp() {
	printf '%s\n' "variant=$variant" "suite=$suite" "pkgs=$pkgs" "$kpkg=$kver" \
		"lists=$(apt_lists_digest)" "epoch=${SOURCE_DATE_EPOCH:-}" |
		cat - "$0" "$here/lib.sh" | sha256sum | cut -d' ' -f1
}
up_to_date() {
	[ "${FORCE:-0}" != 1 ] && [ -d "$outdir/rootfs" ] &&
		[ "$(cat "$outdir/.stamp" 2>/dev/null)" = "$(stamp)" ]
}
resolve_kernel
if up_to_date; then
	log "$outdir/rootfs is up to date ($variant, $kpkg $kver)"
	exit 0
fi
stamp_want=$(stamp)
kdeb=$(fetch "$kpkg" "$kver")

work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

dpkg -x "$kdeb" "$work/kernel"
kv=$(ls "$work/kernel/lib/modules")
[ "$(echo "$kv" | wc -l)" = 1 ] || die "expected one module directory, got: $kv"
epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$work/kernel/boot/vmlinuz-$kv")}

log "mmdebstrap $suite ($variant): $pkgs"
start=$(date +%s)
# sync-in/sync-out keep the downloaded .debs in $debcache; apt keeps only
# what is still valid and downloads the rest
SOURCE_DATE_EPOCH=$epoch mmdebstrap --variant=minbase --include="$pkgs" \
	--aptopt='Acquire::Retries "3"' \
	--skip=essential/unlink "${dpkgopts[@]}" \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
	--setup-hook="sync-in $debcache /var/cache/apt/archives/" \
	--customize-hook="sync-out /var/cache/apt/archives $debcache" \
	--customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/.packages"' \
	"$suite" "$root" >&2
log "mmdebstrap took $(($(date +%s) - start)) s"
mv "$root/.packages" "$work/packages.txt"

# --- kernel and modules -------------------------------------------------------
mkdir -p "$root/boot"
cp -p "$work/kernel/boot/vmlinuz-$kv" "$work/kernel/boot/config-$kv" "$root/boot/"
if [ "$variant" = hpc ]; then
	mkdir -p "$root/lib/modules"
	cp -a "$work/kernel/lib/modules/$kv" "$root/lib/modules/"
	depmod -b "$root" "$kv"
	log "modules: all of $kpkg"
else
	extra=""
	case $variant in net-*) extra="bonding 8021q" ;; esac
	# shellcheck disable=SC2086 # a list
	log "modules: $(copy_modules "$work/kernel" "$kv" "$root" $NIC_MODULES $extra)"
fi

# --- node settings ---------------------------------------------------------
# The wwinit overlay writes hostname, hosts and the network configuration;
# nothing of the build host stays in the image.
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
: >"$root/etc/resolv.conf"
# The root is a tmpfs: nothing to mount or check.
printf '# the root is a tmpfs set up by the wwclient bootstrap\n' >"$root/etc/fstab"

if [ "$variant" = selinux ]; then
	cat >"$root/etc/selinux/config" <<'EOF'
# Written by initramfs/debian-image.sh. The wwclient bootstrap loads the
# policy when the kernel command line has selinux=1 (and security=selinux).
SELINUX=enforcing
SELINUXTYPE=default
EOF
	fc=$root/etc/selinux/default/contexts/files/file_contexts
	[ -s "$fc" ] || die "selinux-policy-default installed no $fc"
	# No labels in the build tree: the image travels as cpio, which carries
	# no xattrs, and a host without SELinux refuses security.selinux. The
	# node's bootstrap labels its tmpfs root after loading the policy.
fi

# --- finish: fixed timestamps, atomic replace --------------------------------
find "$root" -newermt "@$epoch" -exec touch -h -d "@$epoch" {} +
rm -rf "$outdir/rootfs.old"
[ -d "$outdir/rootfs" ] && mv "$outdir/rootfs" "$outdir/rootfs.old"
mv "$root" "$outdir/rootfs"
mv "$work/packages.txt" "$outdir/packages.txt"
rm -rf "$outdir/rootfs.old"
printf '%s\n' "$stamp_want" >"$outdir/.stamp"
log "built $outdir/rootfs ($variant): $(du -sh "$outdir/rootfs" | cut -f1)," \
	"$(find "$outdir/rootfs" | wc -l) files, $(wc -l <"$outdir/packages.txt") packages, kernel $kv"
