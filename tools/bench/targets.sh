# The "Targets" of BENCHMARKS.md (issue 8), each side by side with its peer in
# the same run. Sourced by run.sh (phase "targets"); writes $RES/targets.md.
# shellcheck shell=bash
#
#   wrk    iPXE script (1,000 MACs) vs nginx 300-byte static file (and
#          httpfloor: bare net/http, the same 300 bytes);
#          kernel vs nginx serving the same 8 MiB file (same wrk settings)
#   dhcp   perfdhcp at $DHCP_RATE/s offered for $DHCP_SECONDS s over a veth
#          between two namespaces: server CPU per DORA of wwserver, Kea and
#          dnsmasq, each with its leases on disk
#   image  on the realistic image ($BIG_IMAGE): cold `wwserver build`
#          (2 workers), then /image Range latency vs /kernel
#   build  `wwserver build` of 10,000 nodes: time and state/ size

# shellcheck disable=SC2034 # read by run.sh
TARGETS_ONLY=${BENCH_TARGETS:-"wrk dhcp image build10k"}
WRK_CONNS=${BENCH_WRK_CONNS:-50}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
DHCP_RATE=${BENCH_DHCP_RATE:-6000}
DHCP_SECONDS=${BENCH_DHCP_SECONDS:-10}
BIG_IMAGE=${BENCH_BIG_IMAGE:-$repo/build/hpc-image/rootfs}
TARGETS=$RES/targets.md

# cpu_of PID...: user+system seconds of the processes (from /proc).
cpu_of() {
	local sum=0 p v
	for p in "$@"; do
		v=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print (f[12] + f[13]) / 100 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		sum=$(awk "BEGIN{print $sum + $v}")
	done
	echo "$sum"
}

# wrk_run NAME URL [LUA] PIDS...: wrk for $DUR; prints "req/s cpu_per_req_us p99"
wrk_run() {
	local name=$1 url=$2 lua=$3
	shift 3
	local -a s=()
	[[ -n "$lua" ]] && s=(-s "$lua")
	local c0 c1
	c0=$(cpu_of "$@")
	wrk -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$DUR" --latency "${s[@]}" "$url" >"$RES/wrk-$name.txt" 2>&1
	c1=$(cpu_of "$@")
	local rps p99
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$RES/wrk-$name.txt")
	p99=$(awk '$1 == "99%" {print $2}' "$RES/wrk-$name.txt")
	[[ -n "$rps" ]] || { cat "$RES/wrk-$name.txt" >&2; return 1; }
	local secs=${DUR%s}
	awk -v r="$rps" -v c0="$c0" -v c1="$c1" -v d="$secs" -v p="$p99" \
		'BEGIN{ n = r * d; printf "%.0f %.1f %s\n", r, (n > 0 ? (c1 - c0) / n * 1e6 : 0), p }'
}

target_row() { printf '| %s | %s | %s | %s | %s |\n' "$@" >>"$TARGETS"; }

targets_header() {
	{
		echo "| target | wwserver | peer (same run) | ratio | met? |"
		echo "|---|---|---|---|---|"
	} >"$TARGETS"
}

# --- wrk: iPXE script vs small static file; kernel vs 8 MiB file --------------
# shellcheck source=tools/bench/peers.sh
. "$(dirname "${BASH_SOURCE[0]}")/peers.sh"
targets_wrk() {
	command -v wrk >/dev/null || { echo "bench: wrk missing" >&2; return 1; }
	log "targets: wrk, wwserver vs nginx ($WRK_CONNS connections, $WRK_THREADS threads, $DUR)"
	mktree "$T1K" 1000
	start_server "$T1K"
	wait_ready "targets-ready"
	local lua=$BENCH_DIR/macs.lua
	wrk_cycle_lua "$lua" "$T1K.macs" /ipxe/ # each request: the next node's iPXE script (1,000 MACs)
	local first kernel ksize
	first=$(head -1 "$T1K.macs")
	# every node seen once, as in a boot (the script cache warm)
	"$BIN/httpload" -c 20 -n 1000 -order seq -macs "$T1K.macs" "$URL/ipxe/{mac}" >/dev/null
	read -r w_ipxe w_ipxe_cpu w_ipxe_p99 < <(wrk_run ipxe "$URL/ipxe/$first" "$lua" "$SERVER_PID")
	curl -sf -o "$BENCH_DIR/kernel.bin" "$URL/kernel/$first"
	ksize=$(stat -c %s "$BENCH_DIR/kernel.bin")
	read -r w_k w_k_cpu w_k_p99 < <(wrk_run kernel "$URL/kernel/$first" "" "$SERVER_PID")
	stop_server

	local nd=$BENCH_DIR/nginx-targets
	rm -rf "$nd"
	mkdir -p "$nd/html" "$nd/logs" "$nd/tmp"
	head -c 300 /dev/urandom >"$nd/html/small"
	cp "$BENCH_DIR/kernel.bin" "$nd/html/kernel"
	nginx_conf "$nd" "$NGINX_PORT" >"$nd/nginx.conf"
	env -u NGINX "$NGINX" -p "$nd" -e "$nd/logs/error.log" -c "$nd/nginx.conf" &
	NGINX_PID=$!
	"$BIN/httpload" -ready -max-wait 10s "http://127.0.0.1:$NGINX_PORT/small" >/dev/null
	local pids
	pids=$(echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"))
	# The same Lua request hook as for the scripts, so wrk spends the same per request on both.
	local lua_small=$BENCH_DIR/small.lua
	cat >"$lua_small" <<LUA
request = function()
	return wrk.format("GET", "/small")
end
LUA
	# shellcheck disable=SC2086
	read -r n_small n_small_cpu n_small_p99 < <(wrk_run nginx-small "http://127.0.0.1:$NGINX_PORT/small" "$lua_small" $pids)
	# shellcheck disable=SC2086
	read -r n_k n_k_cpu n_k_p99 < <(wrk_run nginx-kernel "http://127.0.0.1:$NGINX_PORT/kernel" "" $pids)
	stop_nginx

	# The floor: net/http with wwserver's timeouts and nothing else, the
	# same 300 bytes (how much of the iPXE row is Go's HTTP stack).
	# (Held in NGINX_PID so that cleanup stops it on failure too.)
	local floor_port=$((NGINX_PORT + 1))
	"$BIN/httpfloor" -listen "127.0.0.1:$floor_port" -size 300 &
	NGINX_PID=$!
	"$BIN/httpload" -ready -max-wait 10s "http://127.0.0.1:$floor_port/small" >/dev/null
	read -r f_small f_small_cpu _ < <(wrk_run floor-small "http://127.0.0.1:$floor_port/small" "$lua_small" "$NGINX_PID")
	stop_nginx

	local r1 r2
	r1=$(awk "BEGIN{printf \"%.2f\", $w_ipxe / $n_small}")
	r2=$(awk "BEGIN{printf \"%.2f\", $w_k / $n_k}")
	target_row "iPXE script (1,000 MACs) vs nginx 300 B static file, wrk $WRK_CONNS conns: ≥ 0.8×" \
		"$w_ipxe req/s, p99 $w_ipxe_p99, $w_ipxe_cpu µs CPU/req" \
		"$n_small req/s, p99 $n_small_p99, $n_small_cpu µs CPU/req (bare Go net/http, same 300 B: $f_small req/s, $f_small_cpu µs CPU/req, $(awk "BEGIN{printf \"%.2f\", $f_small / $n_small}")×)" \
		"${r1}×" "$(awk "BEGIN{print ($r1 >= 0.8) ? \"yes\" : \"no\"}")"
	target_row "kernel ($ksize B) vs nginx, same file, wrk $WRK_CONNS conns: ≥ 0.95× bytes/s" \
		"$(awk "BEGIN{printf \"%.2f GB/s\", $w_k * $ksize / 1e9}"), p99 $w_k_p99, $w_k_cpu µs CPU/req" \
		"$(awk "BEGIN{printf \"%.2f GB/s\", $n_k * $ksize / 1e9}"), p99 $n_k_p99, $n_k_cpu µs CPU/req" \
		"${r2}×" "$(awk "BEGIN{print ($r2 >= 0.95) ? \"yes\" : \"no\"}")"
}


# --- DHCP: perfdhcp against wwserver, Kea and dnsmasq --------------------------
# shellcheck source=tools/bench/rmem.sh
. "$(dirname "${BASH_SOURCE[0]}")/rmem.sh"
DNS_NS=""
dhcp_ns_up() {
	DNS_NS=wwbench-$$
	ip netns add "$DNS_NS-s"
	ip netns add "$DNS_NS-c"
	ip -n "$DNS_NS-s" link add bsrv type veth peer name bcli netns "$DNS_NS-c"
	ip -n "$DNS_NS-s" addr add 10.110.0.1/16 dev bsrv
	ip -n "$DNS_NS-c" addr add 10.110.0.2/16 dev bcli
	for n in "$DNS_NS-s" "$DNS_NS-c"; do ip -n "$n" link set lo up; done
	ip -n "$DNS_NS-s" link set bsrv up
	ip -n "$DNS_NS-c" link set bcli up
	client_rmem_raise "${BENCH_DHCP_CLIENT_RMEM:-4194304}" # rmem.sh; bytes, 0 = leave it
	sleep 1 # carrier
}
dhcp_ns_down() {
	client_rmem_restore
	[[ -n "$DNS_NS" ]] || return 0
	ip netns del "$DNS_NS-s" 2>/dev/null || true
	ip netns del "$DNS_NS-c" 2>/dev/null || true
	DNS_NS=""
}

# udp_rcvbuf_errors NETNS: the namespace's UDP receive-buffer drops so far.
udp_rcvbuf_errors() {
	ip netns exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) col[$i] = i; h = 1 } else print $col["RcvbufErrors"] }' /proc/net/snmp
}

# dhcp_run NAME PID: perfdhcp for DHCP_SECONDS at DHCP_RATE; prints
# "dora_per_s drops% cpu_per_dora_us client_rcvbuf_drops" (the last: replies
# the kernel dropped because perfdhcp's socket was full, part of the loss).
dhcp_run() {
	local name=$1 pid=$2 c0 c1 b0 b1
	sleep 1
	c0=$(cpu_of "$pid")
	b0=$(udp_rcvbuf_errors "$DNS_NS-c")
	ip netns exec "$DNS_NS-c" perfdhcp -4 -l bcli -r "$DHCP_RATE" -R 1000000 -p "$DHCP_SECONDS" \
		>"$RES/perfdhcp-$name.txt" 2>&1 || true
	c1=$(cpu_of "$pid")
	b1=$(udp_rcvbuf_errors "$DNS_NS-c")
	kill -0 "$pid" 2>/dev/null || { echo "bench: $name died during perfdhcp" >&2; return 1; }
	awk -v c0="$c0" -v c1="$c1" -v d="$DHCP_SECONDS" -v rb="$((b1 - b0))" '
		/Statistics for: REQUEST-ACK/ { ra = 1 }
		/Statistics for: DISCOVER-OFFER/ { ra = 0 }
		ra && /sent packets:/ { sent = $3 }
		ra && /received packets:/ { recv = $3 }
		/^Rate:/ { rate = $2 }
		END {
			if (recv == 0) { print "0 100 0 " rb; exit }
			printf "%.0f %.1f %.1f %d\n", recv / d, (sent > 0 ? (sent - recv) * 100 / sent : 0), (c1 - c0) / recv * 1e6, rb
		}' "$RES/perfdhcp-$name.txt"
}

# dhcp_ww BINARY: one wwserver round (fresh tree and leases); prints
# "dora_per_s drops% cpu_per_dora_us".
dhcp_ww() {
	local d=$BENCH_DIR/dhcp/ww
	rm -rf "$d"
	mkdir -p "$d"
	# Reservation mode with a pool for unknown machines (perfdhcp's MACs
	# are random), leases persisted under state/.
	"$1" init "$d/tree" --wwclient "$BIN/wwclient" --address 10.110.0.1 --listen :29990 >/dev/null
	"$BIN/gentree" -root "$d/tree" -n 10 -fake-image >/dev/null
	cat >"$d/tree/wwserver.toml" <<TOML
address = "10.110.0.1"
listen = ":29990"
[dhcp]
enabled = true
mode = "reservation"
interface = "bsrv"
range_start = "10.110.1.1"
range_end = "10.110.254.254"
netmask = "255.255.0.0"
lease_time = "1h"
[tftp]
enabled = false
TOML
	ip netns exec "$DNS_NS-s" "$1" serve --root "$d/tree" --log-level warn >>"$BENCH_DIR/dhcp/wwserver.log" 2>&1 &
	local ww=$!
	sleep 2
	dhcp_run wwserver "$ww" || echo "0 100 0 0"
	kill -TERM "$ww"
	wait "$ww" 2>/dev/null || true
}

# dhcp_kea: one Kea round, memfile leases persisted to a CSV file.
dhcp_kea() {
	local d=$BENCH_DIR/dhcp/kea
	rm -rf "$d"
	mkdir -p "$d"
	cat >"$d/kea.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "bsrv" ] },
  "lease-database": { "type": "memfile", "persist": true, "name": "$d/kea-leases4.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "10.110.0.0/16", "pools": [ { "pool": "10.110.1.1 - 10.110.254.254" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$d/kea.log" } ], "severity": "WARN" } ]
} }
JSON
	KEA_PIDFILE_DIR=$d KEA_LOCKFILE_DIR=$d ip netns exec "$DNS_NS-s" kea-dhcp4 -c "$d/kea.json" >>"$d/kea.out" 2>&1 &
	local kea=$!
	sleep 2
	dhcp_run kea "$kea" || echo "0 100 0 0"
	kill -TERM "$kea"
	wait "$kea" 2>/dev/null || true
}

# dhcp_dnsmasq: DHCP only (port=0), lease file on disk; "- - -" without dnsmasq.
dhcp_dnsmasq() {
	local d=$BENCH_DIR/dhcp/dnsmasq
	command -v dnsmasq >/dev/null || { echo "- - - -"; return 0; }
	rm -rf "$d"
	mkdir -p "$d"
	ip netns exec "$DNS_NS-s" dnsmasq --no-daemon --port=0 --interface=bsrv --bind-interfaces --user=root \
		--dhcp-range=10.110.1.1,10.110.254.254,255.255.0.0,1h --dhcp-lease-max=100000 --dhcp-authoritative \
		--dhcp-leasefile="$d/dnsmasq.leases" --pid-file="$d/dnsmasq.pid" --log-facility="$d/dnsmasq.log" \
		--no-ping --quiet-dhcp --no-resolv --no-hosts >>"$d/dnsmasq.out" 2>&1 &
	local dm=$!
	sleep 2
	dhcp_run dnsmasq "$dm" || echo "0 100 0 0"
	kill -TERM "$dm"
	wait "$dm" 2>/dev/null || true
}

# median_col N FILE: the median of column N of FILE's lines.
median_col() {
	awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# targets_dhcp: BENCH_DHCP_ROUNDS (default 3) rounds of wwserver and Kea,
# alternating which goes first, medians reported (on a shared machine one
# round of each is noise). The per-round figures go to
# $RES/dhcp-rounds.txt: who, DORA/s, lost %, µs/DORA, client receive-buffer
# drops, load average. BENCH_DHCP_BASE=BINARY adds another wwserver build
# to every round (A/B). dnsmasq runs once, unless BENCH_DHCP_DNSMASQ=0.
targets_dhcp() {
	command -v perfdhcp >/dev/null || { echo "bench: perfdhcp missing (Debian: kea-admin)" >&2; return 1; }
	local rounds=${BENCH_DHCP_ROUNDS:-3} base=${BENCH_DHCP_BASE:-} r name
	log "targets: DHCP, perfdhcp at $DHCP_RATE/s for ${DHCP_SECONDS}s, $rounds round(s): wwserver, Kea${base:+, base}, dnsmasq (leases on disk)"
	rm -rf "$BENCH_DIR/dhcp"
	mkdir -p "$BENCH_DIR/dhcp"
	local rf=$RES/dhcp-rounds.txt
	: >"$rf"
	dhcp_ns_up
	for ((r = 1; r <= rounds; r++)); do
		local order="ww kea${base:+ base}"
		((r % 2)) || order="kea${base:+ base} ww"
		for name in $order; do
			case $name in
			ww) echo "ww $(dhcp_ww "$BIN/wwserver") $(cut -d' ' -f1-3 /proc/loadavg)" >>"$rf" ;;
			kea) echo "kea $(dhcp_kea) $(cut -d' ' -f1-3 /proc/loadavg)" >>"$rf" ;;
			base) echo "base $(dhcp_ww "$base") $(cut -d' ' -f1-3 /proc/loadavg)" >>"$rf" ;;
			esac
		done
	done
	local dm_rate="-" dm_drop="-" dm_cpu="-"
	[[ ${BENCH_DHCP_DNSMASQ:-1} == 0 ]] || read -r dm_rate dm_drop dm_cpu _ < <(dhcp_dnsmasq)
	dhcp_ns_down
	cat "$rf" >&2

	local who ww_rate ww_drop ww_cpu kea_rate kea_drop kea_cpu base_cpu
	for who in ww kea base; do
		grep "^$who " "$rf" | cut -d' ' -f2- >"$rf.$who" || true
	done
	ww_rate=$(median_col 1 "$rf.ww") ww_drop=$(median_col 2 "$rf.ww") ww_cpu=$(median_col 3 "$rf.ww")
	kea_rate=$(median_col 1 "$rf.kea") kea_drop=$(median_col 2 "$rf.kea") kea_cpu=$(median_col 3 "$rf.kea")
	base_cpu=$(median_col 3 "$rf.base")
	local med="" r2
	((rounds == 1)) || med="medians (each column) of $rounds alternating rounds, "
	r=$(awk "BEGIN{printf \"%.2f\", $ww_cpu / $kea_cpu}")
	r2=""
	[[ -z "$base" ]] || r2="; base build $base_cpu µs/DORA"
	target_row "DHCP server CPU per DORA, perfdhcp $DHCP_RATE/s offered, ${DHCP_SECONDS}s, ${med}leases on disk: ≤ 0.8× Kea (issue 16)" \
		"$ww_cpu µs/DORA ($ww_rate DORA/s, ${ww_drop}% lost)" \
		"Kea $kea_cpu µs/DORA ($kea_rate DORA/s, ${kea_drop}% lost); dnsmasq $dm_cpu µs/DORA ($dm_rate DORA/s, ${dm_drop}% lost)$r2" \
		"${r}× Kea" "$(awk "BEGIN{print ($r <= 0.8) ? \"yes\" : \"no\"}")"
}

# --- the realistic image: cold build, /image Range latency ---------------------
targets_image() {
	if [[ ! -d "$BIG_IMAGE/boot" ]]; then
		if [[ -x "$repo/initramfs/debian-image.sh" ]]; then
			log "targets: building the realistic image (initramfs/debian-image.sh hpc; cached)"
			"$repo/initramfs/debian-image.sh" hpc "$(dirname "$BIG_IMAGE")" >&2
		else
			echo "bench: no realistic image at $BIG_IMAGE (set BENCH_BIG_IMAGE)" >&2
			return 1
		fi
	fi
	local files bytes
	files=$(find "$BIG_IMAGE" | wc -l)
	bytes=$(du -sb "$BIG_IMAGE" | cut -f1)
	log "targets: realistic image $BIG_IMAGE ($bytes bytes, $files files)"
	local t=$BENCH_DIR/tree-big
	rm -rf "$t"
	"$BIN/wwserver" init "$t" --wwclient "$BIN/wwclient" --image-from "$BIG_IMAGE" --address 127.0.0.1 \
		--listen "127.0.0.1:$PORT" >/dev/null
	"$BIN/gentree" -root "$t" -n 10 -macs "$t.macs" >/dev/null
	sync
	local t0 t1 cold gz
	t0=$(date +%s%N)
	"$BIN/wwserver" build --root "$t" --workers 2 >/dev/null 2>>"$BENCH_DIR/wwserver.log"
	t1=$(date +%s%N)
	cold=$(awk "BEGIN{printf \"%.1f\", ($t1 - $t0) / 1e9}")
	gz=$(find "$t/state" -type f -size +10M -printf '%s\n' | sort -n | tail -1)
	target_row "cold build of the realistic image ($((bytes / 1000000)) MB, $files files), 2 workers: ≤ 15 s" \
		"${cold} s (archive ${gz:-?} B)" "—" "—" "$(awk "BEGIN{print ($cold <= 15) ? \"yes\" : \"no\"}")"

	start_server "$t"
	wait_ready "big-ready"
	local mac
	mac=$(head -1 "$t.macs")
	"$BIN/httpload" -json -label image-range -c 1 -n 200 -d 2m -H 'Range: bytes=0-0' "$URL/image/$mac" >"$RES/image-range.json"
	"$BIN/httpload" -json -label kernel-range -c 1 -n 200 -d 2m -H 'Range: bytes=0-0' "$URL/kernel/$mac" >"$RES/kernel-range.json"
	stop_server
	local ip50 ip99 kp50 kp99
	ip50=$("$BIN/benchreport" -latency p50 "$RES/image-range.json")
	ip99=$("$BIN/benchreport" -latency p99 "$RES/image-range.json")
	kp50=$("$BIN/benchreport" -latency p50 "$RES/kernel-range.json")
	kp99=$("$BIN/benchreport" -latency p99 "$RES/kernel-range.json")
	target_row "/image one-byte Range request on that image, 200 in a row: ≤ 5 ms" \
		"p50 $ip50 ms, p99 $ip99 ms" "/kernel, same server: p50 $kp50 ms, p99 $kp99 ms" "—" \
		"$(awk "BEGIN{print ($ip99 <= 5) ? \"yes\" : \"no\"}")"
}

# --- wwserver build of 10,000 nodes ---------------------------------------------
targets_build10k() {
	log "targets: wwserver build, 10,000 nodes"
	mktree "$T10K" 10000
	rm -rf "$T10K/state"
	sync
	local t0 t1 s bytes
	t0=$(date +%s%N)
	"$BIN/wwserver" build --root "$T10K" --workers "$(nproc)" >/dev/null 2>>"$BENCH_DIR/wwserver.log"
	t1=$(date +%s%N)
	s=$(awk "BEGIN{printf \"%.1f\", ($t1 - $t0) / 1e9}")
	bytes=$(du -sb "$T10K/state" | cut -f1)
	target_row "\`wwserver build\`, 10,000 nodes, empty state/: ≤ 8 s and ≤ 60 MB" \
		"${s} s, $((bytes / 1000000)) MB in state/" "Warewulf: ~67 min (notes)" "—" \
		"$(awk "BEGIN{print ($s <= 8 && $bytes <= 60e6) ? \"yes\" : \"no\"}")"
}
