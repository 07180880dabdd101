#!/usr/bin/env bash
# A/B comparison of two wwserver binaries (e.g. before and after a fix):
#
#   tools/bench/ab.sh OLD_WWSERVER NEW_WWSERVER [ROUNDS]
#
# On a 1,000-node tree, ROUNDS times (default 3), alternating A and B so that
# background load hits both alike: start the server pinned to CPU 0, make
# every node seen, then with the load generator on CPU 1 run iPXE, /status,
# runtime overlay (200 and 304), system overlay and kernel loads. Prints the
# req/s (or GB/s) ranges and the server CPU per request of A and B. Settings
# as for run.sh (BENCH_DIR, BENCH_PORT, BENCH_DURATION, BENCH_MAX_OTHER, …);
# results go to $BENCH_DIR/ab/. About 2 minutes per round.
set -euo pipefail

if [[ $# -lt 2 ]]; then
	echo "usage: $0 OLD_WWSERVER NEW_WWSERVER [ROUNDS]" >&2
	exit 2
fi
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${3:-3}
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/bench/lib.sh
. "$repo/tools/bench/lib.sh"
RES=$BENCH_DIR/ab
T1K=$BENCH_DIR/ab-tree1k

mkdir -p "$BIN" "$RES"
rm -f "$RES"/*.json
BENCH_SERVER=$A build_tools
mktree "$T1K" 1000
"$BIN/benchreport" -machine >"$RES/ab.txt"
printf 'A: %s\nB: %s\nwwserver on CPU 0, load generator on CPU 1; %s x %d rounds, %d connections\n' \
	"$A" "$B" "$DUR" "$ROUNDS" "$CONNS" >>"$RES/ab.txt"

pin=""
if [[ "$PIN" == 1 ]]; then
	pin=0
	export LOAD_CPUS=1
fi
for r in $(seq "$ROUNDS"); do
	for v in a b; do
		if [[ $v == a ]]; then WWSERVER=$A; else WWSERVER=$B; fi
		log "round $r: $v ($WWSERVER)"
		start_server "$T1K" "$pin"
		wait_ready "ready-$v.$r"
		load "seen-$v.$r" -c "$CONNS" -d 2m -n 1000 -order seq -macs "$T1K.macs" "$URL/ipxe/{mac}"
		steady "ipxe-$v.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/ipxe/{mac}"
		steady "status1k-$v.$r" -c "$CONNS" -d "$DUR" -warmup 1s "$URL/status"
		steady "runtime-$v.$r" -c "$CONNS" -d "$DUR" -warmup 1s "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
		steady "runtime304-$v.$r" -c "$CONNS" -d "$DUR" -warmup 1s -revalidate "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
		steady "system-$v.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/overlay/system/{mac}"
		steady "kernel-$v.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/kernel/{mac}"
		stop_server
	done
done
"$BIN/benchreport" -ab "$RES" | tee "$RES/table.md"
