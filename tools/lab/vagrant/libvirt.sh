# shellcheck shell=bash
# tools/lab/vagrant/libvirt.sh: shell functions of test.sh around libvirt's
# system instance (qemu:///system). Sourced, not run.
#
# libvirt_start_if_needed DIR   starts virtlogd and libvirtd (pid files in
#                               DIR) when nothing answers; on hosts without
#                               systemd nothing starts them
# libvirt_stop_ours             stops what libvirt_start_if_needed started,
#                               by PID, and the networks it autostarted
# libvirt_snapshot FILE         domains, networks (and which are active),
#                               pools, volumes and nvram files, one a line
# libvirt_leftovers TAG BEFORE  what is new since BEFORE, apart from the
#                               box's image volume (vagrant-libvirt's cache)
#                               and the pool holding it
# libvirt_purge TAG BEFORE      removes what is new since BEFORE and belongs
#                               to the run (names starting with TAG, the box
#                               volume, a pool made by vagrant-libvirt)
# libvirt_same BEFORE           the snapshot is BEFORE again

export LIBVIRT_DEFAULT_URI=qemu:///system
NVRAM_DIR=/var/lib/libvirt/qemu/nvram
started_libvirtd=
started_virtlogd=
autostarted_nets=

log() { printf 'test-vagrant: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for SECONDS CMD...: runs CMD every half second until it succeeds.
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.5
	done
}

pid_of_file() { [ -s "$1" ] && cat "$1"; }

libvirt_start_if_needed() {
	local dir=$1
	if virsh -q version >/dev/null 2>&1; then
		return 0
	fi
	if [ ! -S /run/libvirt/virtlogd-sock ]; then
		virtlogd -d -p "$dir/virtlogd.pid"
		wait_for 30 pid_of_file "$dir/virtlogd.pid" || die "virtlogd did not start"
		started_virtlogd=$(cat "$dir/virtlogd.pid")
		log "started virtlogd (pid $started_virtlogd)"
	fi
	libvirtd -d -p "$dir/libvirtd.pid"
	wait_for 30 pid_of_file "$dir/libvirtd.pid" || die "libvirtd did not start"
	started_libvirtd=$(cat "$dir/libvirtd.pid")
	wait_for 60 virsh -q version || die "libvirtd (pid $started_libvirtd) does not answer"
	log "started libvirtd (pid $started_libvirtd)"
	# networks marked autostart (Debian's "default") came up with it
	autostarted_nets=$(virsh net-list --name | sed '/^$/d')
}

# stop_pid PID NAME: SIGTERM, then SIGKILL after 30 s.
stop_pid() {
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null || return 0
	if ! wait_for 30 eval "! kill -0 $1"; then
		log "$2 (pid $1) still runs after SIGTERM: SIGKILL"
		kill -KILL "$1" 2>/dev/null
	fi
	log "stopped $2 (pid $1)"
}

libvirt_stop_ours() {
	local n
	if [ -n "$started_libvirtd" ]; then
		for n in $autostarted_nets; do virsh -q net-destroy "$n" >/dev/null 2>&1; done
	fi
	stop_pid "$started_libvirtd" libvirtd
	stop_pid "$started_virtlogd" virtlogd
}

libvirt_snapshot() {
	local p
	{
		virsh list --all --name | sed '/^$/d; s/^/domain /'
		virsh net-list --all --name | sed '/^$/d; s/^/network /'
		virsh net-list --name | sed '/^$/d; s/^/active-network /'
		for p in $(virsh pool-list --all --name); do
			echo "pool $p"
			virsh -q pool-refresh "$p" >/dev/null 2>&1
			virsh -q vol-list --pool "$p" 2>/dev/null | awk -v p="$p" 'NF {print "volume " p "/" $1}'
		done
		find "$NVRAM_DIR" -mindepth 1 -maxdepth 1 -printf 'nvram %f\n' 2>/dev/null
	} | sort >"$1"
}

# The start of the box's volume names (vagrant-libvirt adds the box version,
# a timestamp for a box added from a file).
box_volume() { echo "${WW_BOX//\//-VAGRANTSLASH-}_vagrant_box_image_"; }

# new_since BEFORE: the snapshot's lines that BEFORE does not have.
new_since() {
	local now
	now=$(mktemp)
	libvirt_snapshot "$now"
	comm -13 "$1" "$now"
	rm -f "$now"
}

libvirt_leftovers() {
	new_since "$2" | { grep -v -e "^volume [^/]*/$(box_volume)" -e '^pool ' || true; } | tr '\n' ' ' | sed 's/ $//'
}

libvirt_purge() {
	local tag=$1 kind name removed=
	while read -r kind name; do
		case "$kind $name" in
		"domain $tag"*)
			virsh -q destroy "$name" >/dev/null 2>&1
			virsh -q undefine --nvram --remove-all-storage "$name" >/dev/null 2>&1
			;;
		"network $tag"*)
			virsh -q net-destroy "$name" >/dev/null 2>&1
			virsh -q net-undefine "$name" >/dev/null 2>&1
			;;
		"volume "*/"$tag"* | "volume "*/"$(box_volume)"*)
			virsh -q vol-delete --pool "${name%%/*}" "${name#*/}" >/dev/null 2>&1
			;;
		"nvram $tag"*) rm -f "${NVRAM_DIR:?}/$name" ;;
		*) continue ;;
		esac
		removed="$removed $kind $name"
	done < <(new_since "$2" | grep -v '^active-network ')
	# a pool vagrant-libvirt made (its default), once empty
	while read -r kind name; do
		[ "$kind" = pool ] || continue
		if [ -z "$(virsh -q vol-list --pool "$name" 2>/dev/null | sed '/^$/d')" ]; then
			virsh -q pool-destroy "$name" >/dev/null 2>&1
			virsh -q pool-undefine "$name" >/dev/null 2>&1
			removed="$removed pool $name"
		fi
	done < <(new_since "$2")
	echo "${removed# }"
}

libvirt_same() {
	local diff
	diff=$(new_since "$1")
	[ -z "$diff" ] || log "new since the start: $(echo "$diff" | tr '\n' ' ')"
	local now
	now=$(mktemp)
	libvirt_snapshot "$now"
	local gone
	gone=$(comm -23 "$1" "$now")
	rm -f "$now"
	[ -z "$gone" ] || log "gone since the start: $(echo "$gone" | tr '\n' ' ')"
	[ -z "$diff" ] && [ -z "$gone" ]
}
