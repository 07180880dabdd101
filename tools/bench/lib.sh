# Shared by run.sh and ab.sh (sourced after setting repo): settings from the
# environment (see run.sh), process handling, load runs, tree generation.
# shellcheck shell=bash

BENCH_DIR=${BENCH_DIR:-/tmp/wwbench}
PORT=${BENCH_PORT:-29873}
NGINX_PORT=${BENCH_NGINX_PORT:-29880}
DUR=${BENCH_DURATION:-8s}
REPEAT=${BENCH_REPEAT:-3}
CONNS=${BENCH_CONNS:-50}
PIN=${BENCH_PIN:-1}
ONLY=${BENCH_ONLY:-"targets ten one build nginx"}
GO=${GO:-go}
MAX_OTHER=${BENCH_MAX_OTHER:-30}
RETRIES=${BENCH_RETRIES:-2}
RETRY_BUDGET=${BENCH_RETRY_BUDGET:-24}
BIN=$BENCH_DIR/bin
RES=$BENCH_DIR/results
URL=http://127.0.0.1:$PORT

if [[ -z "${BENCH_IMAGE:-}" && -d $repo/build/image/rootfs ]]; then
	BENCH_IMAGE=$repo/build/image/rootfs
elif [[ "${BENCH_IMAGE:-}" == fake ]]; then
	BENCH_IMAGE=""
fi
NGINX=${BENCH_NGINX:-$(command -v nginx || true)}
if [[ "$PIN" == 1 ]] && { ! command -v taskset >/dev/null || [[ $(nproc) -lt 2 ]]; }; then
	echo "bench: taskset missing or fewer than 2 CPUs: no pinned runs" >&2
	PIN=0
fi

PRIV=()
[[ $(id -u) == 0 ]] && PRIV=(-privileged-ports)
# shellcheck source=tools/bench/splice.sh
. "$repo/tools/bench/splice.sh"

HB_BODY='{"version":"bench","uptime_seconds":100,"boot_id":"bench","runtime_etag":""}'

# Peers measured side by side (Debian packages): wrk, Kea (kea-dhcp4 and
# perfdhcp, which is in kea-admin), dnsmasq. nginx is BENCH_NGINX (make bench
# unpacks Debian's nginx under build/nginx instead of installing the package,
# which would start a web server on port 80).
PEER_PACKAGES="wrk kea-dhcp4-server kea-admin dnsmasq-base"

# install_peers: installs the missing peer packages (as root; services are
# not started by the packages we use: Kea and dnsmasq run only as
# the benchmark starts them, on addresses of their own).
install_peers() {
	local missing="" p
	for p in $PEER_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	[[ -z "$missing" ]] && return 0
	if [[ $(id -u) != 0 ]]; then
		echo "bench: missing peers:$missing (run as root to install them)" >&2
		return 0
	fi
	log "installing peers:$missing"
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
}

# build_tools: wwserver (or BENCH_SERVER), wwclient and the load tools into $BIN.
build_tools() {
	log "building into $BIN"
	(
		cd "$repo"
		if [[ -n "${BENCH_SERVER:-}" ]]; then
			cp "$BENCH_SERVER" "$BIN/wwserver"
		else
			$GO build -o "$BIN/wwserver" ./server/cmd/wwserver
		fi
		CGO_ENABLED=0 $GO build -o "$BIN/wwclient" ./wwclient
		$GO build -o "$BIN/httpload" ./tools/bench/cmd/httpload
		$GO build -o "$BIN/httpfloor" ./tools/bench/cmd/httpfloor
		$GO build -o "$BIN/gentree" ./tools/bench/cmd/gentree
		$GO build -o "$BIN/benchreport" ./tools/bench/cmd/benchreport
	)
}

log() { printf '\n[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- processes: every one we start is stopped by PID, also on failure ----
SERVER_PID=""
NGINX_PID=""

stop_server() {
	[[ -n "$SERVER_PID" ]] || return 0
	local pid=$SERVER_PID
	SERVER_PID=""
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 250); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

stop_nginx() {
	[[ -n "$NGINX_PID" ]] || return 0
	kill -TERM "$NGINX_PID" 2>/dev/null || true
	wait "$NGINX_PID" 2>/dev/null || true
	NGINX_PID=""
}

cleanup() {
	local rc=$?
	stop_server
	stop_nginx
	if declare -F dhcp_ns_down >/dev/null; then dhcp_ns_down; fi
	if [[ $rc != 0 ]]; then
		echo "bench: FAILED (exit $rc); logs in $BENCH_DIR" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server TREE [CPUS]: wwserver in the background; SERVER_PID; T0 (ns)
start_server() {
	local tree=$1 cpus=${2:-}
	local -a cmd=("${WWSERVER:-$BIN/wwserver}" serve --root "$tree")
	if [[ -n "$cpus" ]]; then
		cmd=(taskset -c "$cpus" "${cmd[@]}")
	fi
	if ss -ltn 2>/dev/null | grep -q "127.0.0.1:$PORT "; then
		echo "bench: port $PORT is in use (set BENCH_PORT)" >&2
		return 1
	fi
	T0=$(date +%s%N)
	"${cmd[@]}" >>"$BENCH_DIR/wwserver.log" 2>&1 &
	SERVER_PID=$!
}

# wait_ready NAME [URL]: seconds from T0 until URL (default /healthz) answers 2xx.
wait_ready() {
	local name=$1 u=${2:-$URL/healthz}
	"$BIN/httpload" -ready -since "$T0" -max-wait 120s -json -label "$name" "$u" >"$RES/$name.json"
	kill -0 "$SERVER_PID"
}

# steady NAME [httpload flags...] URL: a steady-state run (load), run again
# when other processes took more than MAX_OTHER % of a CPU meanwhile.
steady() {
	local try=0 other
	while :; do
		load "$@"
		other=$("$BIN/benchreport" -other "$RES/$1.json")
		if ((other <= MAX_OTHER || try >= RETRIES || RETRY_BUDGET <= 0)); then
			return 0
		fi
		try=$((try + 1))
		RETRY_BUDGET=$((RETRY_BUDGET - 1))
		echo "  (others used ${other}% of a CPU during $1: again, $RETRY_BUDGET retries left)" >&2
		sleep 2
	done
}

# load NAME [httpload flags...] URL: one run, recorded as $RES/NAME.json
load() {
	local name=$1
	shift
	local -a pin=()
	if [[ -n "${LOAD_CPUS:-}" ]]; then
		pin=(taskset -c "$LOAD_CPUS")
	fi
	local pids=${LOAD_PIDS:-$SERVER_PID}
	"${pin[@]}" "$BIN/httpload" -json -label "$name" -pid "$pids" "$@" >"$RES/$name.json"
	"$BIN/benchreport" -one "$RES/$name.json" >&2
	kill -0 "${pids%%,*}" 2>/dev/null || { echo "bench: the server died" >&2; return 1; }
}

# scalar NAME VALUE UNIT [EXTRA-JSON-FIELDS]
scalar() {
	printf '{"label":"%s","value":%s,"unit":"%s"%s}\n' "$1" "$2" "$3" "${4:+,$4}" >"$RES/$1.json"
	printf '  %s: %s %s\n' "$1" "$2" "$3" >&2
}

# rss NAME: the server's peak resident memory (VmHWM) so far, in MB.
rss() {
	local kb
	kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
	scalar "$1" "$(awk "BEGIN{printf \"%.1f\", $kb/1024}")" MB
}

# mktree DIR N: wwserver init + gentree; MACs in DIR.macs
mktree() {
	local dir=$1 n=$2
	rm -rf "$dir" "$dir.macs"
	local -a img=()
	[[ -n "${BENCH_IMAGE:-}" ]] && img=(--image-from "$BENCH_IMAGE")
	"$BIN/wwserver" init "$dir" --wwclient "$BIN/wwclient" "${img[@]}" --address 127.0.0.1 \
		--listen "127.0.0.1:$PORT" >/dev/null
	# Every request comes from 127.0.0.1, not from the nodes' addresses:
	# secure mode's source check is off (the privileged-port check stays).
	local -a extra=(-source-check false)
	[[ -z "${BENCH_IMAGE:-}" ]] && extra+=(-fake-image)
	# Secure mode needs privileged source ports for the runtime overlay and
	# heartbeats; without root the benchmark tree runs insecure.
	[[ $(id -u) != 0 ]] && extra+=(-secure false)
	"$BIN/gentree" -root "$dir" -n "$n" -macs "$dir.macs" "${extra[@]}"
}


