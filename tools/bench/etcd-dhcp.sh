#!/usr/bin/env bash
# tools/bench/etcd-dhcp.sh (make bench-etcd): DHCP pool leases shared by two
# wwserver processes through a 3-member etcd cluster (three embedded members
# in one etcdrun process, real Raft, each fsyncing its own WAL), perfdhcp
# offering RATE DORA/s for SECONDS over a bridge between network namespaces
# this script creates (and removes, also on failure). One run measures, side
# by side, each on a fresh key prefix: the writer without batching
# (state.etcd.lease_batch = 1: one claim per transaction), with it (64),
# each row on a fresh 3-member cluster,
# both with every server answering every DISCOVER
# (state.etcd.answer_every_discover = true), and batched with the DISCOVERs
# split between the servers by hash bucket (the default): completed DORA/s,
# lost %, p99 DISCOVER→ACK latency,
# claims per transaction; then every lease in etcd and every lease perfdhcp
# received is checked: no address bound or ACKed to two MACs.
#
# Usage: tools/bench/etcd-dhcp.sh [RATE]   (default 2000)
# Environment: ETCD_BENCH_SECONDS (15), ETCD_BENCH_CLIENTS (60000),
#   ETCD_BENCH_ROWS ("1:all 64:all 64:split 64:split 64:all": lease_batch:who
#   answers; the batched pair twice, in A B B A order, against drift in load),
#   ETCD_BENCH_CLIENT_RMEM (4194304: net.core.rmem_default during the run,
#   for perfdhcp's one socket; 0 leaves the host's).
#   Needs root, iproute2, curl, perfdhcp (kea-admin).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
rate=${1:-2000}
secs=${ETCD_BENCH_SECONDS:-15}
clients=${ETCD_BENCH_CLIENTS:-60000}
rows=${ETCD_BENCH_ROWS:-1:all 64:all 64:split 64:split 64:all}
GO=${GO:-go}
[[ $(id -u) == 0 ]] || { echo "etcd-dhcp: needs root (network namespaces)" >&2; exit 1; }
for c in perfdhcp curl ip; do command -v $c >/dev/null || { echo "etcd-dhcp: $c missing (make deps-bench)" >&2; exit 1; }; done

work=$(mktemp -d /tmp/wwetcdb.XXXXXX)
base=wwe-$$
pids=()
# shellcheck source=tools/bench/dhcp-net.sh
. "$repo/tools/bench/dhcp-net.sh"
# shellcheck source=tools/bench/rmem.sh
. "$repo/tools/bench/rmem.sh"
cleanup() { dhcp_cleanup; client_rmem_restore; }
trap cleanup EXIT
client_rmem_raise "${ETCD_BENCH_CLIENT_RMEM:-4194304}" # bytes; 0 = leave it

(cd "$repo" && $GO build -o "$work/wwserver" ./server/cmd/wwserver && $GO build -o "$work/etcdrun" ./tools/bench/cmd/etcdrun &&
	$GO build -o "$work/leasecheck" ./tools/bench/cmd/leasecheck && CGO_ENABLED=0 $GO build -o "$work/wwclient" ./wwclient)

dhcp_net "$base" 10.205

# start_etcd ROW: a fresh cluster for each row (a row's offers expire a
# minute later: etcd revoking the leases of ~30,000 keys slowed whichever
# row came next to half its rate). It lives in server 0's namespace:
# members on 2379, 2381, 2383.
members=(http://10.205.0.1:2379 http://10.205.0.1:2381 http://10.205.0.1:2383)
etcdpid=
start_etcd() {
	ip netns exec "$base-0" "$work/etcdrun" -dir "$work/etcd-$1" -host 10.205.0.1 -members 3 >"$work/etcd-$1.log" 2>&1 &
	etcdpid=$!
	pids+=($etcdpid)
	for _ in $(seq 600); do grep -q "ETCD READY" "$work/etcd-$1.log" && break; sleep 0.1; done
	grep -q "ETCD READY" "$work/etcd-$1.log" || { cat "$work/etcd-$1.log" >&2; exit 1; }
}
stop_etcd() {
	kill "$etcdpid" 2>/dev/null || true
	wait "$etcdpid" 2>/dev/null || true
	rm -rf "$work/etcd-$1"
}

# tree I BATCH MODE ROW: a served tree for server I, its own member listed first
tree() {
	local i=$1 batch=$2 every=false root=$work/tree-$1-$2-$3-$4
	[[ $3 == all ]] && every=true
	"$work/wwserver" init "$root" --wwclient "$work/wwclient" --address 10.205.0.$((i + 1)) >/dev/null
	sed -i '0,/^enabled = false/s//enabled = true/; 0,/^interface = .*/s//interface = "eth0"/;
		0,/^range_start = .*/s//range_start = "10.205.1.0"/; 0,/^range_end = .*/s//range_end = "10.205.250.255"/;
		0,/^netmask = .*/s//netmask = "255.255.0.0"/' "$root/wwserver.toml"
	printf '\n[state]\nbackend = "etcd"\n[state.etcd]\nendpoints = ["%s", "%s"]\nprefix = "/b%s%s/"\nserver_id = "srv%s"\nlease_batch = %s\nanswer_every_discover = %s\n' \
		"${members[$i]}" "${members[2]}" "$batch" "$3" "$i" "$batch" "$every" >>"$root/wwserver.toml"
	echo "$root"
}

SERVED=()
serve() { # serve I ROOT: start, wait until HTTP answers (/healthz says degraded: placeholder image)
	ip netns exec "$base-$1" "$work/wwserver" serve --root "$2" --log-level warn >"$work/serve-$1.log" 2>&1 &
	pids+=($!)
	SERVED+=($!)
	for _ in $(seq 300); do
		ip netns exec "$base-c" curl -s -o /dev/null "http://10.205.0.$(($1 + 1)):9873/healthz" && return
		sleep 0.1
	done
	cat "$work/serve-$1.log" >&2
	exit 1
}

stop_served() {
	for p in "${SERVED[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	SERVED=()
}

# metric NAME: the sum over both servers of a /metrics sample
metric() {
	local sum=0 v
	for i in 0 1; do
		v=$(ip netns exec "$base-c" curl -sf "http://10.205.0.$((i + 1)):9873/metrics" | awk -v n="$1" '$1 == n {print $2}')
		sum=$(awk "BEGIN{print $sum + ${v:-0}}")
	done
	echo "$sum"
}

# rcvbuf_errors: UDP datagrams the kernel dropped in the client namespace
# because a socket's receive buffer was full (perfdhcp not reading fast
# enough): replies sent but never seen by perfdhcp.
rcvbuf_errors() {
	ip netns exec "$base-c" awk '$1 == "Udp:" && !h {for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1; next} $1 == "Udp:" {print $c}' /proc/net/snmp
}

# cpu PID...: user+system CPU seconds the processes have used
cpu() {
	local tck sum=0 p
	tck=$(getconf CLK_TCK)
	for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	awk "BEGIN{printf \"%.1f\", $sum / $tck}"
}

echo "net.core.rmem_default during the run: $(sysctl -n net.core.rmem_default) B (the host's: $RMEM_OLD B)"
echo
echo "| lease writer (state.etcd.lease_batch) | who answers a DISCOVER | offered DORA/s | completed DORA/s | lost (no ACK received) | lost at the servers (no ACK sent) | p99 DISCOVER→ACK | claims per transaction (mean) | CAS conflicts | stale drops (> 1 s queued) | leases checked (etcd / ACKed) | replies sent by the servers (OFFER / ACK) | client receive-buffer drops | CPU s (wwservers / etcd) | duplicates |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
status=0
rown=0
for row in $rows; do
	batch=${row%%:*} mode=${row#*:} rown=$((rown + 1))
	start_etcd "$rown"
	serve 0 "$(tree 0 "$batch" "$mode" "$rown")"
	serve 1 "$(tree 1 "$batch" "$mode" "$rown")"
	if [[ $mode == split ]]; then # both servers have read the other's registration (every 2 s)
		for _ in $(seq 100); do [[ $(metric wwserver_dhcp_balance_servers) == 4 ]] && break; sleep 0.1; done
	fi
	out=$work/perfdhcp-$rown-$batch-$mode.out
	rcv0=$(rcvbuf_errors)
	ecpu0=$(cpu "$etcdpid")
	ip netns exec "$base-c" nice -n -5 perfdhcp -4 -l br0 -r "$rate" -R "$clients" -p "$secs" -W 2000000 -x tl >"$out" 2>&1 || true
	sent=$(awk '/Statistics for: DISCOVER-OFFER/{f=1} f && /sent packets:/{print $3; exit}' "$out")
	acks=$(awk '/Statistics for: REQUEST-ACK/{f=1} f && /received packets:/{print $3; exit}' "$out")
	lost=$(awk "BEGIN{ if (${sent:-0} > 0) printf \"%.2f %%\", 100 * (1 - ${acks:-0} / ${sent}); else print \"?\" }")
	p99=$("$work/leasecheck" -p99 "$out" 2>/dev/null || echo "?")
	n=$(metric wwserver_etcd_lease_batch_size_count)
	s=$(metric wwserver_etcd_lease_batch_size_sum)
	conflicts=$(metric wwserver_etcd_lease_conflicts_total)
	rcv=$(($(rcvbuf_errors) - rcv0))
	offers=$(metric 'wwserver_dhcp_replies_sent_total{type="OFFER"}')
	ackss=$(metric 'wwserver_dhcp_replies_sent_total{type="ACK"}')
	stale=$(metric 'wwserver_dhcp_dropped_total{reason="stale"}')
	takeovers=$(metric wwserver_dhcp_balance_takeovers_total)
	if [[ -n ${ETCD_BENCH_KEEP:-} ]]; then
		for i in 0 1; do ip netns exec "$base-c" curl -sf "http://10.205.0.$((i + 1)):9873/metrics" >"$ETCD_BENCH_KEEP/metrics-$rown-$batch-$mode-$i.txt" || true; done
	fi
	scpu=$(cpu "${SERVED[@]}")
	ecpu=$(awk "BEGIN{printf \"%.1f\", $(cpu "$etcdpid") - $ecpu0}")
	srvlost=$(awk "BEGIN{ if (${sent:-0} > 0) printf \"%.2f %%\", 100 * (1 - ${ackss:-0} / ${sent}); else print \"?\" }")
	per=$(awk "BEGIN{ if ($n > 0) printf \"%.1f\", $s / $n; else print \"1 (unbatched)\" }")
	stop_served
	check=$(ip netns exec "$base-0" "$work/leasecheck" -endpoints "$(IFS=,; echo "${members[*]}")" -prefix "/b$batch$mode/" -acks "$out" 2>&1) || status=1
	who="every server"
	[[ $mode == split ]] && who="one server (hash bucket; $takeovers takeovers)"
	printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s / %s | %s |\n' "$batch" "$who" "$rate" "$(awk "BEGIN{print ${acks:-0} / $secs}")" \
		"$lost" "$srvlost" "$p99" "$per" "${conflicts%.*}" "${stale%.*}" \
		"$(sed -n 's/.*leases in etcd: \([0-9]*\) addresses.*ACKed leases read: \([0-9]*\).*/\1 \/ \2/p' <<<"$check")" \
		"${offers%.*}" "${ackss%.*}" "$rcv" "$scpu" "$ecpu" \
		"$(sed -n 's/.*duplicates: \([0-9]*\).*/\1/p' <<<"$check")"
	grep DUPLICATE <<<"$check" >&2 || true
	if [[ -n ${ETCD_BENCH_KEEP:-} ]]; then cp "$out" "$ETCD_BENCH_KEEP/"; fi
	stop_etcd "$rown"
done
exit $status
