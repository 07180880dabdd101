#!/usr/bin/env bash
# The DHCP target of `make bench` alone (targets_dhcp in targets.sh):
# perfdhcp at BENCH_DHCP_RATE/s (default 6000) for BENCH_DHCP_SECONDS
# (default 10) over a veth between two namespaces, against wwserver, Kea
# and dnsmasq, each with its leases on disk, one after the other in the
# same run; prints the table row (server CPU per DORA, DORA/s, losses).
# wwserver and Kea run BENCH_DHCP_ROUNDS times (default 3), alternating,
# and the row gives medians; BENCH_DHCP_BASE=BINARY adds another wwserver
# build to every round; BENCH_DHCP_DNSMASQ=0 skips dnsmasq.
# BENCH_DHCP_CLIENT_RMEM (bytes, default 4194304; 0 = leave it):
# net.core.rmem_default during the row, so perfdhcp's one socket does not
# drop replies meant for many clients (tools/bench/rmem.sh).
# Needs root, iproute2, perfdhcp (kea-admin), kea-dhcp4-server.
#
# BENCH_SERVER=BINARY measures that wwserver instead (A/B against a build
# of another commit).
# DHCP_BENCH_PERF=FILE additionally records wwserver with `perf record -g`
# while perfdhcp runs (read with: perf report -i FILE; with
# BENCH_DHCP_ROUNDS=1, else the last round's profile is kept).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/bench/lib.sh
. "$repo/tools/bench/lib.sh"
# shellcheck source=tools/bench/targets.sh
. "$repo/tools/bench/targets.sh"
mkdir -p "$BIN" "$RES"
build_tools
if [[ -n "${DHCP_BENCH_PERF:-}" ]]; then
	# Wrap dhcp_run: profile the wwserver run only.
	eval "orig_$(declare -f dhcp_run)"
	dhcp_run() {
		local perfpid=
		if [[ $1 == wwserver ]]; then
			perf record -q -g -F 2999 -p "$2" -o "$DHCP_BENCH_PERF" -- sleep "$((DHCP_SECONDS + 1))" >/dev/null 2>&1 &
			perfpid=$!
		fi
		orig_dhcp_run "$@"
		[[ -z $perfpid ]] || wait "$perfpid"
	}
fi
targets_header
targets_dhcp
cat "$TARGETS"
