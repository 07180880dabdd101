#!/bin/bash
# tools/lab/vagrant/box.sh [BOX_NAME]
#
# Builds the Vagrant box of the lab's server VM (provider libvirt) from Debian
# packages and adds it to Vagrant (`vagrant box add`), so the lab needs no box
# download and no internet inside the VM. BOX_NAME: default $WW_BOX, else
# ww/bookworm (the Vagrantfile's default).
#
# The box: Debian 12 (mmdebstrap) with the kernel, systemd-networkd (DHCP on
# every NIC Vagrant does not configure), openssh-server, sudo, rsync (synced
# folders) and what the Vagrantfile's provisioning uses (ipxe's boot files,
# curl, iproute2); a `vagrant` user (password vagrant, sudo without password)
# that accepts the insecure key Debian's vagrant package ships. One ext4
# partition on an MBR disk, booted by extlinux (syslinux's mbr.bin). The
# partition is reached through a loop device with an offset (losetup -P
# makes no partition nodes in containers).
#
# Cached in $WW_VAGRANT_CACHE (default /var/cache/ww/vagrant): the .debs and
# the box file NAME.box with its stamp (this script, the package list, the
# suite). Nothing is rebuilt or re-added while the stamp and the added box
# match; FORCE=1 rebuilds. Root only (mmdebstrap, losetup, mount).
#
# Environment: WW_BOX, WW_VAGRANT_CACHE, WW_SUITE (default bookworm), FORCE=1.
set -euo pipefail
export LC_ALL=C
umask 022

log() { printf 'vagrant-box: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

box=${1:-${WW_BOX:-ww/bookworm}}
suite=${WW_SUITE:-bookworm}
cache=${WW_VAGRANT_CACHE:-/var/cache/ww/vagrant}
boxfile=$cache/${box//\//-}.box
size_gb=8
keys=/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys
pub=$(ls "$keys/vagrant.pub" /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -n1 || true)

pkgs=systemd,systemd-sysv,udev,dbus,kmod,procps,iproute2,linux-image-amd64,initramfs-tools,zstd
pkgs=$pkgs,openssh-server,sudo,rsync,ipxe,curl,ca-certificates
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, losetup, mount)"
for c in mmdebstrap:mmdebstrap extlinux:extlinux qemu-img:qemu-utils sfdisk:fdisk mkfs.ext4:e2fsprogs vagrant:vagrant; do
	command -v "${c%%:*}" >/dev/null || die "${c%%:*} missing: apt-get install ${c#*:} (make deps-vagrant)"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || die "$mbr missing: apt-get install syslinux-common"
[ -n "$pub" ] || die "the vagrant package's insecure key (keys/vagrant.pub) is missing"

stamp=$(printf '%s\n' "box=$box" "suite=$suite" "pkgs=$pkgs" "size=$size_gb" | cat - "$0" | sha256sum | cut -d' ' -f1)
vhome=${VAGRANT_HOME:-$HOME/.vagrant.d}
added=$vhome/boxes/${box//\//-VAGRANTSLASH-}/0/libvirt/ww-box.stamp

if [ "${FORCE:-0}" != 1 ] && [ "$(cat "$added" 2>/dev/null)" = "$stamp" ]; then
	log "box $box is up to date"
	exit 0
fi

mkdir -p "$cache/debs"
if [ "${FORCE:-0}" = 1 ] || [ "$(cat "$boxfile.stamp" 2>/dev/null)" != "$stamp" ]; then
	start=$(date +%s)
	work=$(mktemp -d "$cache/.work.XXXXXX")
	mnt=$work/mnt
	loop=
	cleanup() {
		mountpoint -q "$mnt" && umount -R "$mnt"
		[ -n "$loop" ] && losetup -d "$loop"
		rm -rf "$work"
	}
	trap cleanup EXIT

	nodocs=()
	for p in /usr/share/man/ /usr/share/doc/ /usr/share/info/ /usr/share/locale/ /usr/share/lintian/; do
		nodocs+=("--dpkgopt=path-exclude=$p*")
	done
	nodocs+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
	log "mmdebstrap $suite: $pkgs"
	# sync-in/sync-out keep the downloaded .debs in $cache/debs
	mmdebstrap --variant=minbase --include="$pkgs" --aptopt='Acquire::Retries "3"' "${nodocs[@]}" \
		--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
		--setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
		--customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
		"$suite" "$work/rootfs" >&2
	root=$work/rootfs

	# --- the vagrant user, ssh, network -------------------------------------
	chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
	echo vagrant:vagrant | chroot "$root" chpasswd
	install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
	install -m 0600 -o 1000 -g 1000 "$pub" "$root/home/vagrant/.ssh/authorized_keys"
	echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/vagrant"
	chmod 0440 "$root/etc/sudoers.d/vagrant"
	printf 'UseDNS no\n' >"$root/etc/ssh/sshd_config.d/vagrant.conf"
	# Host keys are made on each VM's first boot, not shared by every VM of the box.
	rm -f "$root"/etc/ssh/ssh_host_*
	mkdir -p "$root/etc/systemd/system/ssh.service.d"
	# (before Debian's own `sshd -t`, which fails without keys)
	printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
		>"$root/etc/systemd/system/ssh.service.d/host-keys.conf"
	# DHCP on NICs Vagrant leaves alone (its own files, 50-vagrant-*, come first).
	cat >"$root/etc/systemd/network/99-dhcp.network" <<-'EOF'
		[Match]
		Name=en* eth*

		[Network]
		DHCP=ipv4
	EOF
	chroot "$root" systemctl enable systemd-networkd ssh >/dev/null 2>&1
	# Nothing a lab VM needs, and minutes each under TCG.
	chroot "$root" systemctl mask e2scrub_reap.service e2scrub_all.timer apt-daily.timer \
		apt-daily-upgrade.timer fstrim.timer systemd-networkd-wait-online.service >/dev/null 2>&1
	echo wwbox >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\twwbox\n' >"$root/etc/hosts"
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

	# --- disk: MBR, one ext4 partition from 1 MiB, extlinux -----------------
	img=$work/box.img
	truncate -s "${size_gb}G" "$img"
	printf 'start=2048, type=83, bootable\n' | sfdisk -q "$img"
	dd if="$mbr" of="$img" bs=440 count=1 conv=notrunc status=none
	loop=$(losetup --find --show --offset $((2048 * 512)) --sizelimit $(((size_gb << 30) - 2048 * 512)) "$img")
	# extlinux 6.04 reads neither 64bit nor metadata_csum ext4
	mkfs.ext4 -q -L root -O ^64bit,^metadata_csum "$loop"
	uuid=$(blkid -s UUID -o value "$loop")
	mkdir -p "$mnt"
	mount "$loop" "$mnt"
	cp -a "$root/." "$mnt/"
	printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid" >"$mnt/etc/fstab"
	kv=$(ls "$mnt/lib/modules")
	[ "$(echo "$kv" | wc -l)" = 1 ] || die "expected one kernel, got: $kv"
	mkdir -p "$mnt/boot/extlinux"
	cat >"$mnt/boot/extlinux/extlinux.conf" <<-EOF
		SERIAL 0 115200
		DEFAULT debian
		TIMEOUT 1
		LABEL debian
		  LINUX /boot/vmlinuz-$kv
		  INITRD /boot/initrd.img-$kv
		  APPEND root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8
	EOF
	extlinux --install "$mnt/boot/extlinux" >&2
	umount "$mnt"
	losetup -d "$loop"
	loop=

	# --- the box: metadata.json + box.img (qcow2) ---------------------------
	qemu-img convert -c -O qcow2 "$img" "$work/box.img.qcow2"
	mv "$work/box.img.qcow2" "$work/box.img"
	printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$size_gb" >"$work/metadata.json"
	printf '%s\n' "$stamp" >"$work/ww-box.stamp"
	tar -C "$work" -cf "$boxfile.tmp" metadata.json box.img ww-box.stamp
	mv "$boxfile.tmp" "$boxfile"
	printf '%s\n' "$stamp" >"$boxfile.stamp"
	log "built $boxfile ($(du -h "$boxfile" | cut -f1)) in $(($(date +%s) - start)) s"
fi

# Volumes of older boxes of this name in libvirt's pool: removed (libvirt
# may not be running: fine).
for vol in $(virsh -q vol-list --pool default 2>/dev/null | awk '{print $1}'); do
	case $vol in "${box//\//-VAGRANTSLASH-}_vagrant_box_image_"*) virsh -q vol-delete --pool default "$vol" >/dev/null 2>&1 || true ;; esac
done
vagrant box add --force --name "$box" "$boxfile" >&2
[ "$(cat "$added" 2>/dev/null)" = "$stamp" ] || die "vagrant box add did not install $added"
log "box $box added"
