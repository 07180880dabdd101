#!/usr/bin/env bash
# tools/bench/shared-dhcp.sh: DHCP pool lease throughput with the leases in
# files (state/leases.journal, one server) against etcd ([state] backend =
# "etcd": one server, then two servers sharing the pool), in one run, with
# perfdhcp over a bridge between network namespaces this script creates (and
# removes, also on failure). etcd is the embedded server wwserver's client is
# built with (tools/bench/cmd/etcdrun), one member, data on local disk.
# Not part of make test (issue 11's "lease throughput with etcd vs files").
#
# Usage: tools/bench/shared-dhcp.sh [RATE]     (default 2000 DORA/s offered)
# Environment: SHARED_BENCH_SECONDS (10), SHARED_BENCH_CLIENTS (20000)
# Needs root, iproute2, perfdhcp (Debian kea-admin).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
rate=${1:-2000}
secs=${SHARED_BENCH_SECONDS:-10}
clients=${SHARED_BENCH_CLIENTS:-20000}
[[ $(id -u) == 0 ]] || { echo "shared-dhcp: needs root (network namespaces)" >&2; exit 1; }
command -v perfdhcp >/dev/null || { echo "shared-dhcp: perfdhcp missing (apt-get install -y kea-admin)" >&2; exit 1; }

work=$(mktemp -d /tmp/wwshared.XXXXXX)
base=wwsd-$$
pids=()
# shellcheck source=tools/bench/dhcp-net.sh
. "$repo/tools/bench/dhcp-net.sh"
trap dhcp_cleanup EXIT

(cd "$repo" && go build -o "$work/wwserver" ./server/cmd/wwserver && go build -o "$work/etcdrun" ./tools/bench/cmd/etcdrun)
CGO_ENABLED=0 go -C "$repo" build -o "$work/wwclient" ./wwclient

dhcp_net "$base" 10.204

ip netns exec "$base-0" "$work/etcdrun" -dir "$work/etcd" -host 10.204.0.1 >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "ETCD READY" "$work/etcd.log" && break; sleep 0.05; done
grep -q "ETCD READY" "$work/etcd.log" || { cat "$work/etcd.log" >&2; exit 1; }

# tree I BACKEND PREFIX: a served tree for server I
tree() {
	local i=$1 backend=$2 prefix=$3
	local root=$work/tree-$i-$prefix
	"$work/wwserver" init "$root" --wwclient "$work/wwclient" --address 10.204.0.$((i + 1)) >/dev/null
	sed -i '0,/^enabled = false/s//enabled = true/; 0,/^interface = .*/s//interface = "eth0"/;
		0,/^range_start = .*/s//range_start = "10.204.1.0"/; 0,/^range_end = .*/s//range_end = "10.204.200.255"/;
		0,/^netmask = .*/s//netmask = "255.255.0.0"/' "$root/wwserver.toml"
	printf '\n[state]\nbackend = "%s"\n[state.etcd]\nendpoints = ["http://10.204.0.1:2379"]\nprefix = "/%s/"\nserver_id = "srv%s"\n' \
		"$backend" "$prefix" "$i" >>"$root/wwserver.toml"
	echo "$root"
}

serve() { # serve I ROOT: start, wait for the ready line
	local log=$work/serve-$1-$$-$RANDOM.log
	ip netns exec "$base-$1" "$work/wwserver" serve --root "$2" --log-level warn >"$log" 2>&1 &
	pids+=($!)
	SERVED+=($!)
	for _ in $(seq 400); do grep -q "wwserver serving" "$log" 2>/dev/null && return; sleep 0.05; done
	# --log-level warn hides the ready line: give the sockets a moment instead
	sleep 2
}

run() { # run LABEL: perfdhcp against whatever serves now
	local out
	out=$(ip netns exec "$base-c" perfdhcp -4 -l br0 -r "$rate" -R "$clients" -p "$secs" -W 2000000 2>&1 || true)
	local acks drops
	acks=$(awk '/Statistics for: REQUEST-ACK/{f=1} f && /received packets:/{print $3; exit}' <<<"$out")
	drops=$(awk '/Statistics for: REQUEST-ACK/{f=1} f && /drops ratio:/{print $3; exit}' <<<"$out")
	printf '| %s | %s | %.0f | %s %% |\n' "$1" "$rate" "$(awk "BEGIN{print ${acks:-0} / $secs}")" "${drops:-?}"
}

stop_served() {
	for p in "${SERVED[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	SERVED=()
}

echo "| leases in | offered DORA/s | completed DORA/s | REQUEST drops |"
echo "|---|---|---|---|"
SERVED=()
serve 0 "$(tree 0 files files)"
run "files, one server (journal, fsync per batch)"
stop_served
serve 0 "$(tree 0 etcd one)"
run "etcd, one server"
stop_served
serve 0 "$(tree 0 etcd two)"
serve 1 "$(tree 1 etcd two)"
run "etcd, two servers sharing the pool"
stop_served
