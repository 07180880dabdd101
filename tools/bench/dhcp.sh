#!/usr/bin/env bash
# DHCP side by side: wwserver's built-in DHCP server and Kea (Debian
# kea-dhcp4-server, memfile, leases persisted), both driven by perfdhcp
# (Debian kea-admin) over a veth between two network namespaces this script
# creates (and removes, also on failure). Not part of make test.
#
# For each server and each offered rate it reports the DORA exchanges per
# second perfdhcp completed, the drops, and the server's CPU time per
# completed exchange (utime+stime from /proc/PID/stat over the run), which is
# the fair comparison when perfdhcp shares the cores with the server.
#
# Usage: tools/bench/dhcp.sh [RATE...]          (default: 6000)
# Environment:
#   DHCP_BENCH_SECONDS  length of each run (default 10)
#   DHCP_BENCH_CLIENTS  distinct simulated clients (default 60000)
#   DHCP_BENCH_SERVERS  servers to run (default "wwserver kea")
#   WWSERVER            wwserver binary (default: built into a temp dir)
#   DHCP_BENCH_WWLOG    wwserver --log-level (default warn, as Kea's logger here:
#                       at info wwserver logs one line per ACK)
#   DHCP_BENCH_PERF     file prefix: record each server's run with `perf record -g`
#                       (FILE-SERVER-RATE.data; read with perf report -i)
# Needs root, iproute2, perfdhcp and kea-dhcp4.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
rates=("${@:-6000}")
secs=${DHCP_BENCH_SECONDS:-10}
clients=${DHCP_BENCH_CLIENTS:-60000}
servers=${DHCP_BENCH_SERVERS:-wwserver kea}

for tool in ip perfdhcp kea-dhcp4; do
	command -v "$tool" >/dev/null || { echo "dhcp.sh: $tool not found (apt-get install -y iproute2 kea-admin kea-dhcp4-server)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "dhcp.sh: needs root (network namespaces)" >&2; exit 1; }

work=$(mktemp -d /tmp/wwdhcpbench.XXXXXX)
ns=wwdb-$$
srv=$ns-s cli=$ns-c
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$srv" 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
[[ -n "${DHCP_BENCH_KEEP:-}" ]] && trap 'cat "$work"/kea/*.log >&2; cleanup' EXIT

ip netns add "$srv"
ip netns add "$cli"
ip -n "$srv" link add s0 type veth peer name c0 netns "$cli"
ip -n "$srv" addr add 10.202.0.1/16 dev s0
ip -n "$cli" addr add 10.202.0.2/16 dev c0
for n in "$srv" "$cli"; do ip -n "$n" link set lo up; done
ip -n "$srv" link set s0 up
ip -n "$cli" link set c0 up
for _ in $(seq 100); do
	ip -n "$cli" -o link show c0 | grep -q LOWER_UP && break
	sleep 0.05
done

if [[ -z "${WWSERVER:-}" ]]; then
	(cd "$repo" && go build -trimpath -o "$work/bin/" ./server/cmd/wwserver ./wwclient)
	WWSERVER=$work/bin/wwserver
fi

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

start_wwserver() {
	local tree=$work/tree
	rm -rf "$tree"
	"$WWSERVER" init "$tree" --address 10.202.0.1 --listen 10.202.0.1:9873 \
		--wwclient "$(dirname "$WWSERVER")/wwclient" >/dev/null 2>&1 ||
		"$WWSERVER" init "$tree" --address 10.202.0.1 --listen 10.202.0.1:9873 >/dev/null
	python3 - "$tree/wwserver.toml" <<-'EOF'
		import re, sys
		p = sys.argv[1]; s = open(p).read()
		sect = s.index("[dhcp]")
		head, dhcp = s[:sect], s[sect:]
		for k, v in [("enabled", "true"), ("interface", '"s0"'), ("range_start", '"10.202.1.0"'),
		             ("range_end", '"10.202.255.254"'), ("netmask", '"255.255.0.0"')]:
		    dhcp = re.sub(r"(?m)^%s = .*$" % k, "%s = %s" % (k, v), dhcp, count=1)
		open(p, "w").write(head + dhcp)
	EOF
	ip netns exec "$srv" "$WWSERVER" serve --root "$tree" --log-level "${DHCP_BENCH_WWLOG:-warn}" >"$work/wwserver.log" 2>&1 &
	SERVER_PID=$!
	pids+=("$SERVER_PID")
	for _ in $(seq 200); do
		ip netns exec "$srv" ss -lun | grep -q ':67 ' && return 0
		sleep 0.05
	done
	cat "$work/wwserver.log" >&2
	return 1
}

start_kea() {
	mkdir -p "$work/kea"
	cat >"$work/kea/kea.json" <<-EOF
		{"Dhcp4": {
		  "interfaces-config": {"interfaces": ["s0"], "dhcp-socket-type": "raw"},
		  "lease-database": {"type": "memfile", "persist": true, "name": "$work/kea/leases4.csv"},
		  "valid-lifetime": 3600,
		  "subnet4": [{"subnet": "10.202.0.0/16", "pools": [{"pool": "10.202.1.0 - 10.202.255.254"}]}],
		  "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "$work/kea/kea.log"}]}]
		}}
	EOF
	KEA_PIDFILE_DIR=$work/kea KEA_LOCKFILE_DIR=$work/kea ip netns exec "$srv" kea-dhcp4 -c "$work/kea/kea.json" >"$work/kea/out.log" 2>&1 &
	SERVER_PID=$!
	pids+=("$SERVER_PID")
	for _ in $(seq 200); do
		ip netns exec "$srv" ss -lun | grep -q ':67 ' && return 0
		sleep 0.05
	done
	cat "$work/kea/out.log" >&2
	return 1
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
}

printf '%-9s %8s %10s %8s %10s %14s\n' server offered "DORA/s" drops% "cpu_s" "cpu_us/DORA"
for rate in "${rates[@]}"; do
	for s in $servers; do
		"start_$s"
		pid=$SERVER_PID
		# kea-dhcp4 runs under `ip netns exec`, which execs: same pid.
		perfpid=
		if [[ -n "${DHCP_BENCH_PERF:-}" ]]; then
			perf record -q -g -F 2999 -p "$pid" -o "$DHCP_BENCH_PERF-$s-$rate.data" -- sleep "$secs" >/dev/null 2>&1 &
			perfpid=$!
		fi
		t0=$(cpu_ticks "$pid")
		out=$(ip netns exec "$cli" perfdhcp -4 -l c0 -r "$rate" -R "$clients" -p "$secs" 2>&1 || true)
		t1=$(cpu_ticks "$pid")
		[[ -n "$perfpid" ]] && wait "$perfpid"
		stop_server
		echo "$out" >"$work/perfdhcp-$s-$rate.txt"
		# perfdhcp prints the rate of completed 4-way exchanges and per-exchange drops.
		got=$(echo "$out" | awk '/^Rate:/ {print $2; exit}')
		acks=$(echo "$out" | awk '/REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}')
		sent=$(echo "$out" | awk '/sent packets:/ {print $3}' | paste -sd+ | bc)
		drops=$(echo "$out" | awk '/drops:/ {print $2}' | paste -sd+ | bc)
		got=${got:-0}
		cpu=$(echo "scale=3; ($t1-$t0)/$hz" | bc)
		per=$(echo "scale=1; if (${acks:-0} > 0) ($t1-$t0)*1000000/$hz/$acks else 0" | bc)
		dp=$(echo "scale=2; if (${sent:-0} > 0) 100*${drops:-0}/$sent else 0" | bc)
		printf '%-9s %8s %10.0f %8s %10s %14s\n' "$s" "$rate" "$got" "$dp" "$cpu" "$per"
		[[ -n "${DHCP_BENCH_VERBOSE:-}" ]] && echo "$out" >&2
	done
done
