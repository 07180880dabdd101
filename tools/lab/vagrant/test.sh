#!/bin/bash
# tools/lab/vagrant/test.sh — what `make test-vagrant` runs (root; 10-40 min
# under TCG). The Vagrant lab end to end:
#
#   1. the server's box (box.sh: built once, then reused);
#   2. libvirt: started here (virtlogd, libvirtd) when nothing runs it, and
#      stopped again at the end;
#   3. `vagrant up` of the server and two nodes, n001 with BIOS (SeaBIOS) and
#      n002 with UEFI (OVMF, per-node nvram), the server's management network
#      isolated (WW_MGMT_MODE=none);
#   4. asserts, from `wwserver status` read in the server VM (vagrant ssh),
#      that both nodes reach RUNTIME_OVERLAY, and that the server VM has no
#      route out (no default route);
#   5. `vagrant destroy -f`, then asserts that it left no domain, network,
#      volume (other than the box's image, vagrant-libvirt's cache) or nvram.
#
# Whatever happens (failure, Ctrl-C), the EXIT trap destroys what is left of
# the run, removes the box's image volume if this run uploaded it, and checks
# that libvirt's domains, networks and volumes are what they were before.
# The make target stages bin/ and the node image first (make vagrant-files).
#
# Environment: WW_LIBVIRT_DRIVER (default: kvm when libvirt offers it, else
# qemu), WW_BOX, WW_VAGRANT_TIMEOUT (seconds for nodes to reach
# RUNTIME_OVERLAY, default 1800), KEEP=1 (keep the work directory).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=tools/lab/vagrant/libvirt.sh
. "$here/libvirt.sh"

[ "$(id -u)" = 0 ] || die "run as root (libvirt's system instance, the box build)"
[ -f "$repo/build/vagrant/image.tar" ] || die "build/vagrant/image.tar missing: make vagrant-files"

t0=$(date +%s)
work=$(mktemp -d /tmp/ww-vagrant-test.XXXXXX)
chmod 0755 "$work" # virtlogd writes the serial logs here
tag=wwt$$
export VAGRANT_CWD=$repo VAGRANT_DOTFILE_PATH=$work/dotvagrant VAGRANT_DEFAULT_PROVIDER=libvirt
export WW_PREFIX=$tag- WW_NET=$tag WW_MGMT_MODE=none WW_NODES=2 WW_UEFI_NODES=n002 WW_SERIAL_DIR=$work
export WW_BOX=${WW_BOX:-ww/bookworm}
deadline=${WW_VAGRANT_TIMEOUT:-1800}
failed=1

# --- cleanup, also on failure ------------------------------------------------
finish() {
	local rc=$? leftovers
	trap - EXIT INT TERM
	set +e
	if [ "$failed" = 1 ]; then
		log "FAILED; serial consoles (last lines):"
		for f in "$work"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }; done
		[ -n "${up_done:-}" ] && timeout 120 vagrant ssh server -c 'sudo journalctl -u wwserver -n 40 --no-pager'
	fi
	if [ -d "$VAGRANT_DOTFILE_PATH" ]; then
		timeout 900 vagrant destroy -f >"$work/destroy-trap.log" 2>&1 || log "vagrant destroy failed: $work/destroy-trap.log"
	fi
	leftovers=$(libvirt_purge "$tag" "$work/before")
	[ -z "$leftovers" ] || log "removed after the run: $leftovers"
	if ! libvirt_same "$work/before"; then
		log "FAIL: libvirt is not as it was before the run"
		rc=1
	fi
	libvirt_stop_ours
	if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
	if [ $rc = 0 ]; then echo "test-vagrant: 1 passed, 0 failed"; else echo "test-vagrant: 0 passed, 1 failed"; fi
	exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

# --- 1. box, 2. libvirt --------------------------------------------------------
"$here/box.sh" "$WW_BOX"
t_box=$(date +%s)
libvirt_start_if_needed "$work"
libvirt_snapshot "$work/before"
if [ -z "${WW_LIBVIRT_DRIVER:-}" ]; then
	# kvm when libvirt offers it and its QEMU user may open /dev/kvm (no udev: root only)
	WW_LIBVIRT_DRIVER=qemu
	if virsh -q domcapabilities --virttype kvm >/dev/null 2>&1 &&
		runuser -u libvirt-qemu -- test -r /dev/kvm -a -w /dev/kvm 2>/dev/null; then
		WW_LIBVIRT_DRIVER=kvm
	fi
fi
export WW_LIBVIRT_DRIVER
log "driver $WW_LIBVIRT_DRIVER, box $WW_BOX, domains $WW_PREFIX*, work $work"

# --- 3. up -------------------------------------------------------------------
vagrant validate >/dev/null
if ! timeout 2700 vagrant up --no-parallel server n001 n002 2>&1 | tee "$work/up.log" | sed -u 's/\x1b\[KProgress:[^\x1b]*//g; s/^/  up: /'; then
	die "vagrant up failed (log: $work/up.log)"
fi
up_done=1
t_up=$(date +%s)
log "vagrant up took $((t_up - t_box)) s"

# The firmware each node was given: n001 SeaBIOS, n002 OVMF with its own nvram.
virsh dumpxml "${tag}-n001" | grep -q '<loader' && die "n001 has a <loader>: it should boot SeaBIOS"
nvram=$(virsh dumpxml "${tag}-n002" | sed -n 's:.*<nvram[^>]*>\(.*\)</nvram>.*:\1:p')
if [ -z "$nvram" ] || [ ! -f "$nvram" ]; then die "n002 has no nvram file (<nvram>$nvram</nvram>)"; fi

# --- 4. both nodes reach RUNTIME_OVERLAY, read from the server VM ------------
status() {
	timeout 180 vagrant ssh server -c \
		'sudo NO_COLOR=1 wwserver status --server http://127.0.0.1:9873' 2>/dev/null | tr -d '\r'
}
stage() { awk -v n="$1" '$1 == n {print $2}' <<<"$2"; }
end=$(($(date +%s) + deadline))
while :; do
	st=$(status || true)
	s1=$(stage n001 "$st") s2=$(stage n002 "$st")
	log "$(($(date +%s) - t_up)) s after up: n001 ${s1:-?}, n002 ${s2:-?}"
	[ "$s1" = RUNTIME_OVERLAY ] && [ "$s2" = RUNTIME_OVERLAY ] && break
	[ "$(date +%s)" -lt "$end" ] || { printf '%s\n' "$st"; die "nodes not at RUNTIME_OVERLAY after $deadline s"; }
	sleep 15 # polling interval: each look costs a vagrant ssh
done
t_boot=$(date +%s)
printf '%s\n' "$st" | sed 's/^/  status: /'
routes=$(timeout 180 vagrant ssh server -c 'ip route show default' 2>/dev/null | tr -d '\r')
[ -z "$routes" ] || die "the server VM has a default route (management network not isolated): $routes"

# --- 5. destroy, and nothing left behind ---------------------------------------
if ! timeout 900 vagrant destroy -f 2>&1 | tee "$work/destroy.log" | sed 's/^/  destroy: /'; then
	die "vagrant destroy failed"
fi
t_destroy=$(date +%s)
left=$(libvirt_leftovers "$tag" "$work/before")
[ -z "$left" ] || die "vagrant destroy left behind: $left"
failed=0
log "PASS: box $((t_box - t0)) s, up $((t_up - t_box)) s, nodes at RUNTIME_OVERLAY $((t_boot - t_up)) s after up," \
	"destroy $((t_destroy - t_boot)) s, total $((t_destroy - t0)) s"
