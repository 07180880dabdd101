#!/usr/bin/env bash
# wwserver benchmarks (make bench). Not part of make test.
#
# Builds wwserver, wwclient and the load tools, generates served trees with
# 1,000 and 10,000 nodes, starts wwserver on 127.0.0.1 (and nginx, when one
# is found, as a reference), measures, and prints a table (also written to
# $BENCH_DIR/results/table.md). All traffic goes to 127.0.0.1; every load
# run is bounded in requests and time. Takes 7-10 minutes (more on a busy machine).
#
# Environment (all optional):
#   BENCH_DIR       work directory (default /tmp/wwbench; trees, binaries, results)
#   BENCH_PORT      wwserver port (default 29873); BENCH_NGINX_PORT (default 29880)
#   BENCH_DURATION  length of each timed load run (default 8s; at most 2m)
#   BENCH_REPEAT    repeats of each measurement (default 3)
#   BENCH_CONNS     connections (default 50)
#   BENCH_IMAGE     image rootfs for --image-from (default build/image/rootfs when
#                   it exists, else, or with BENCH_IMAGE=fake, a fake image with an
#                   8 MiB random kernel)
#   BENCH_PIN       1 (default): also run the key loads with wwserver on CPU 0 and
#                   the load generator on CPU 1 (needs taskset and 2+ CPUs); 0: skip
#   BENCH_NGINX     nginx binary for the reference runs (default: nginx in PATH;
#                   none: skipped). Without installing it: apt-get download nginx
#                   && dpkg-deb -x nginx_*.deb DIR; BENCH_NGINX=DIR/usr/sbin/nginx
#   BENCH_ONLY      space-separated phases to run (default: "targets ten one build nginx")
#   BENCH_TARGETS   rows of the targets phase (default: "wrk dhcp image build10k")
#   BENCH_BIG_IMAGE the realistic image of the targets phase (default
#                   build/hpc-image/rootfs, built by initramfs/debian-image.sh hpc)
#   BENCH_DHCP_RATE, BENCH_DHCP_SECONDS  perfdhcp's offered rate (6000) and length (10)
#   BENCH_WRITE     1 (default): rewrite the tables in BENCHMARKS.md; 0: don't
#
# Peers (nginx, wrk, Kea with perfdhcp, dnsmasq) are installed from Debian
# when missing (as root). The targets phase (targets.sh) measures the
# issue-8 targets side by side with them in the same run.
#   BENCH_SERVER    a wwserver binary to measure instead of building one (A/B of a patch)
#   BENCH_MAX_OTHER steady-state runs during which other processes used more than
#                   this % of one CPU are run again (default 30; the machine may be
#                   shared), at most BENCH_RETRIES (default 2) more times each and
#                   BENCH_RETRY_BUDGET (default 24) times in all
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/bench/lib.sh
. "$repo/tools/bench/lib.sh"
# shellcheck source=tools/bench/targets.sh
. "$repo/tools/bench/targets.sh"

# --- build ---------------------------------------------------------------
mkdir -p "$BIN" "$RES"
rm -f "$RES"/*.json "$BENCH_DIR/wwserver.log"
LOAD_AT_START=$(cut -d" " -f1-3 /proc/loadavg)
install_peers
NGINX=${BENCH_NGINX:-$(command -v nginx || true)}
build_tools
"$BIN/benchreport" -machine >"$RES/machine.txt"
cat "$RES/machine.txt" >&2
echo "image: ${BENCH_IMAGE:-fake (8 MiB random kernel)}; duration $DUR x $REPEAT, $CONNS connections; pinned runs: $PIN; server: ${BENCH_SERVER:-built from $repo at $(git -C "$repo" log -1 --format=%h 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD -- server 2>/dev/null || echo ' + local changes')}" >>"$RES/machine.txt"

T10K=$BENCH_DIR/tree10k
T1K=$BENCH_DIR/tree1k

# --- the issue-8 targets, each with its peer in the same run ------------------
if [[ " $ONLY " == *" targets "* ]]; then
	targets_header
	for t in $TARGETS_ONLY; do
		"targets_$t"
	done
	cat "$TARGETS" >&2
fi

# --- 10,000 nodes: start to ready, /status with all seen ------------------
if [[ " $ONLY " == *" ten "* ]]; then
	log "10,000-node tree"
	mktree "$T10K" 10000
	first=$(head -1 "$T10K.macs")
	for r in $(seq "$REPEAT"); do
		rm -rf "$T10K/state"
		start_server "$T10K"
		wait_ready "ready10k.$r"
		wait_ready "firstipxe10k.$r" "$URL/ipxe/$first"
		printf '  start to ready (10,000 nodes, empty state): %ss\n' "$(grep -o '"ready_seconds":[0-9.]*' "$RES/ready10k.$r.json" | cut -d: -f2)" >&2
		[[ $r == "$REPEAT" ]] || stop_server
	done
	# Every node seen once (its iPXE script), then /status.
	load seen10k -c "$CONNS" -d 2m -n 10000 -order seq -macs "$T10K.macs" "$URL/ipxe/{mac}"
	for r in $(seq "$REPEAT"); do
		steady "status10k.$r" -c "$CONNS" -d "$DUR" -warmup 1s "$URL/status"
	done
	steady "heartbeat10k.1" -c "$CONNS" -d "$DUR" -warmup 1s "${PRIV[@]}" -m POST -body "$HB_BODY" -macs "$T10K.macs" "$URL/heartbeat/{mac}"
	steady "status10k-hb.1" -c "$CONNS" -d "$DUR" -warmup 1s "$URL/status"
	rss rss10k.1
	stop_server
	# Restart with state/status.json holding 10,000 nodes.
	for r in $(seq "$REPEAT"); do
		start_server "$T10K"
		wait_ready "restart10k.$r"
		stop_server
	done
fi

# --- wwserver build, 1,000 nodes -----------------------------------------
if [[ " $ONLY " == *" build "* || " $ONLY " == *" one "* ]]; then
	log "1,000-node tree"
	mktree "$T1K" 1000
fi
if [[ " $ONLY " == *" build "* ]]; then
	log "wwserver build, 1,000 nodes"
	for r in $(seq "$REPEAT"); do
		rm -rf "$T1K/state"
		sync
		t0=$(date +%s%N)
		out=$("$BIN/wwserver" build --root "$T1K" --workers "$(nproc)" 2>>"$BENCH_DIR/wwserver.log")
		t1=$(date +%s%N)
		bytes=$(du -sb "$T1K/state" | cut -f1)
		files=$(find "$T1K/state" -type f | wc -l)
		echo "  $out" >&2
		scalar "build1k.$r" "$(awk "BEGIN{printf \"%.3f\", ($t1-$t0)/1e9}")" s "\"bytes\":$bytes,\"files\":$files"
		# The server started on this state: runtime overlays of nodes never
		# fetched before (is the prebuilt cache used?).
		start_server "$T1K"
		wait_ready "ready1k-built.$r"
		load "runtime-prebuilt.$r" -c "$CONNS" -d 2m -n 1000 -order seq "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
		stop_server
	done
	t0=$(date +%s%N)
	"$BIN/wwserver" build --root "$T1K" --workers "$(nproc)" >/dev/null 2>>"$BENCH_DIR/wwserver.log"
	t1=$(date +%s%N)
	scalar "build1k-again.1" "$(awk "BEGIN{printf \"%.3f\", ($t1-$t0)/1e9}")" s
fi

# --- 1,000 nodes: the boot path under load ---------------------------------
if [[ " $ONLY " == *" one "* ]]; then
	log "1,000 nodes: cold runtime overlays"
	for r in $(seq "$REPEAT"); do
		rm -rf "$T1K/state"
		start_server "$T1K"
		wait_ready "ready1k.$r"
		load "runtime-cold.$r" -c "$CONNS" -d 2m -n 1000 -order seq "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
		load "system-cold.$r" -c "$CONNS" -d 2m -n 1000 -order seq -macs "$T1K.macs" "$URL/overlay/system/{mac}"
		[[ $r == "$REPEAT" ]] || stop_server
	done

	# Pinned first: the unpinned runs end with heartbeats, which grow /status.
	if [[ "$PIN" == 1 ]]; then
		log "1,000 nodes, pinned: wwserver on CPU 0, load generator on CPU 1"
		stop_server
		start_server "$T1K" 0
		wait_ready "ready1k-pinned.1"
		load seen1k-pin -c "$CONNS" -d 2m -n 1000 -order seq -macs "$T1K.macs" "$URL/ipxe/{mac}"
		export LOAD_CPUS=1
		for r in $(seq "$REPEAT"); do
			steady "ipxe-pin.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/ipxe/{mac}"
			steady "status1k-pin.$r" -c "$CONNS" -d "$DUR" -warmup 1s "$URL/status"
			steady "runtime-pin.$r" -c "$CONNS" -d "$DUR" -warmup 1s "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
			steady "kernel-pin.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/kernel/{mac}"
		done
		unset LOAD_CPUS
		stop_server
		start_server "$T1K"
		wait_ready "ready1k-again.1"
	fi

	log "1,000 nodes, unpinned"
	load seen1k -c "$CONNS" -d 2m -n 1000 -order seq -macs "$T1K.macs" "$URL/ipxe/{mac}"
	for r in $(seq "$REPEAT"); do
		steady "ipxe.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/ipxe/{mac}"
		steady "status1k.$r" -c "$CONNS" -d "$DUR" -warmup 1s "$URL/status"
		steady "runtime.$r" -c "$CONNS" -d "$DUR" -warmup 1s "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
		steady "kernel.$r" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/kernel/{mac}"
	done
	steady "runtime304.1" -c "$CONNS" -d "$DUR" -warmup 2s -revalidate "${PRIV[@]}" -macs "$T1K.macs" "$URL/overlay/runtime/{mac}"
	steady "system.1" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/overlay/system/{mac}"
	steady "image.1" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/image/{mac}"
	steady "heartbeat.1" -c "$CONNS" -d "$DUR" -warmup 1s "${PRIV[@]}" -m POST -body "$HB_BODY" -macs "$T1K.macs" "$URL/heartbeat/{mac}"
	rss rss1k.1
	steady "provision-ipxe.1" -c "$CONNS" -d "$DUR" -warmup 1s -macs "$T1K.macs" "$URL/provision/{mac}?stage=ipxe"
	stop_server
fi

# --- nginx reference: the same load generator against nginx ----------------
if [[ " $ONLY " == *" nginx "* && -n "$NGINX" && -x "$NGINX" ]]; then
	log "nginx reference ($NGINX)"
	nd=$BENCH_DIR/nginx
	rm -rf "$nd"
	mkdir -p "$nd/html" "$nd/logs" "$nd/tmp"
	head -c 300 /dev/urandom >"$nd/html/small"
	head -c $((256 << 20)) /dev/urandom >"$nd/html/big"
	nginx_conf "$nd" "$NGINX_PORT" >"$nd/nginx.conf" # peers.sh
	# (nginx reads inherited sockets from $NGINX: keep it out of its environment)
	env -u NGINX "$NGINX" -p "$nd" -e "$nd/logs/error.log" -c "$nd/nginx.conf" &
	NGINX_PID=$!
	T0=$(date +%s%N)
	"$BIN/httpload" -ready -max-wait 10s "http://127.0.0.1:$NGINX_PORT/small" >/dev/null
	# Server CPU: the master and its workers.
	LOAD_PIDS=$(echo "$NGINX_PID" $(pgrep -P "$NGINX_PID") | tr ' ' ,)
	export LOAD_PIDS
	for r in $(seq "$REPEAT"); do
		steady "nginx-small.$r" -c "$CONNS" -d "$DUR" -warmup 1s "http://127.0.0.1:$NGINX_PORT/small"
		steady "nginx-big.$r" -c "$CONNS" -d "$DUR" -warmup 1s "http://127.0.0.1:$NGINX_PORT/big"
	done
	unset LOAD_PIDS
	stop_nginx
	rm -f "$nd/html/big"
fi

log "results"
"$BIN/benchreport" -dir "$RES" | tee "$RES/table.md"

# Rewrite the generated tables in BENCHMARKS.md (between the markers).
if [[ "${BENCH_WRITE:-1}" == 1 ]]; then
	stamp="Measured $(date -u '+%F %H:%M UTC') on commit $(git -C "$repo" log -1 --format=%h)$(git -C "$repo" diff --quiet HEAD -- server 2>/dev/null || echo ' + local changes') by \`make bench\` ($REPEAT x $DUR per row, $CONNS connections; load average at start: $LOAD_AT_START)."
	[[ -f "$RES/targets.md" ]] && splice_table "$repo/BENCHMARKS.md" targets "$stamp" "$RES/targets.md"
	# (the full table only when a phase of it ran)
	if [[ " $ONLY " == *" ten "* || " $ONLY " == *" one "* || " $ONLY " == *" build "* || " $ONLY " == *" nginx "* ]]; then
		splice_table "$repo/BENCHMARKS.md" full "$stamp" "$RES/table.md"
	fi
fi
