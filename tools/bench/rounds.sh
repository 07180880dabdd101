#!/usr/bin/env bash
# Alternating rounds, medians: the iPXE, kernel and chunk rows of issue 16,
# two wwserver binaries and nginx side by side (root not needed):
#
#   tools/bench/rounds.sh OLD_WWSERVER NEW_WWSERVER [ROUNDS]
#
# Each round runs OLD, NEW and nginx one after the other on each row, so that
# the background load of a shared machine hits all three alike; the medians
# over ROUNDS (default 5) are printed with the load average. Rows
# (ROUNDS_ROWS, default "ipxe kernel chunk"):
#   ipxe    wrk over 1,000 nodes' iPXE scripts vs nginx's 300 B static file
#   ipxe2   the same over 1,000 two-stage nodes (the default boot: the
#           script carries the image digest of the fake image's chunks)
#   kernel  the 8 MiB fake kernel vs the same file from nginx
#   chunk   wrk over every chunk of a two-stage image (ROUNDS_IMAGE, default
#           build/hpc-image/rootfs; 50 nodes) vs the same files from nginx
# Settings: ROUNDS_DIR (default /tmp/wwrounds), ROUNDS_DURATION (s, default
# 5), ROUNDS_CONNS (ipxe/kernel, default 50), ROUNDS_CHUNK_CONNS (default
# 200: 200 nodes, as many connections as make storm's chunk phase keeps
# busy), BENCH_NGINX (default: nginx in PATH, else build/nginx).
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 OLD_WWSERVER NEW_WWSERVER [ROUNDS]" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/bench/peers.sh
. "$repo/tools/bench/peers.sh"
old=$(realpath "$1") new=$(realpath "$2") rounds=${3:-5}
dir=${ROUNDS_DIR:-/tmp/wwrounds}
dur=${ROUNDS_DURATION:-5}
rows=${ROUNDS_ROWS:-"ipxe kernel chunk"}
image=${ROUNDS_IMAGE:-$repo/build/hpc-image/rootfs}
nginx=${BENCH_NGINX:-$(command -v nginx || echo "$repo/build/nginx/usr/sbin/nginx")}
[[ -x "$nginx" ]] || { echo "rounds: no nginx ($nginx; make storm unpacks it under build/nginx)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "rounds: wrk missing (make deps-bench)" >&2; exit 1; }
wport=29890 nport=29891
bin=$dir/bin
mkdir -p "$bin" "$dir/ng/html/chunk" "$dir/ng/logs" "$dir/ng/tmp"
(cd "$repo" && go build -o "$bin/gentree" ./tools/bench/cmd/gentree && go build -o "$bin/httpload" ./tools/bench/cmd/httpload &&
	CGO_ENABLED=0 go build -o "$bin/wwclient" ./wwclient)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# tree NAME N BOOT: a served tree (fake 8 MiB kernel for initrd; ROUNDS_IMAGE for
# twostage; fake-twostage: the fake image, chunked).
tree() {
	local t=$dir/$1
	[[ -f $t/.done ]] && return
	rm -rf "$t"
	"$new" init "$t" --wwclient "$bin/wwclient" --address 127.0.0.1 --listen "127.0.0.1:$wport" >/dev/null
	if [[ $3 == twostage ]]; then
		"$bin/gentree" -root "$t" -n "$2" -macs "$t.macs" -source-check false -boot twostage
		rm -rf "$t/images/default/rootfs"
		cp -a "$image" "$t/images/default/rootfs"
		"$new" build --root "$t" >/dev/null 2>&1
	elif [[ $3 == fake-twostage ]]; then
		"$bin/gentree" -root "$t" -n "$2" -macs "$t.macs" -source-check false -fake-image -boot twostage
		"$new" build --root "$t" >/dev/null 2>&1
	else
		"$bin/gentree" -root "$t" -n "$2" -macs "$t.macs" -source-check false -fake-image
	fi
	touch "$t/.done"
}

cpu_ticks() { # user+system ticks of the PIDs
	local s=0 p v
	for p in "$@"; do
		v=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$p/stat" 2>/dev/null || echo 0)
		s=$((s + v))
	done
	echo "$s"
}

# measure WHO ROW: prints "req/s µs-CPU/req"
measure() {
	local who=$1 row=$2 port=$wport url lua="" conns=${ROUNDS_CONNS:-50} t=$dir/t1k pid ps
	[[ $row == chunk ]] && { t=$dir/tchunk; conns=${ROUNDS_CHUNK_CONNS:-200}; }
	[[ $row == ipxe2 ]] && t=$dir/t1k2
	if [[ $who == nginx ]]; then
		port=$nport
		env -u NGINX "$nginx" -p "$dir/ng" -e "$dir/ng/logs/error.log" -c "$dir/ng/nginx.conf" &
		pid=$!
		"$bin/httpload" -ready -max-wait 10s "http://127.0.0.1:$port/small" >/dev/null
		ps="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
		case $row in ipxe | ipxe2) lua=$dir/small.lua ;; kernel) url=/kernel ;; chunk) lua=$dir/chunks.lua ;; esac
	else
		"$who" serve --root "$t" >>"$dir/wwserver.log" 2>&1 &
		pid=$!
		"$bin/httpload" -ready -max-wait 30s "http://127.0.0.1:$port/healthz" >/dev/null
		ps=$pid
		case $row in
		ipxe | ipxe2)
			lua=$dir/macs.lua
			[[ $row == ipxe2 ]] && lua=$dir/macs2.lua
			"$bin/httpload" -c 20 -n "$(wc -l <"$t.macs")" -order seq -macs "$t.macs" "http://127.0.0.1:$port/ipxe/{mac}" >/dev/null
			;;
		kernel) url=/kernel/$(head -1 "$t.macs") ;;
		chunk) lua=$dir/chunks.lua ;;
		esac
	fi
	pids+=("$pid")
	local -a s=()
	[[ -n $lua ]] && s=(-s "$lua")
	wrk -t2 -c"$conns" -d1s "${s[@]}" "http://127.0.0.1:$port${url:-/}" >/dev/null 2>&1 # warm
	local c0 c1
	# shellcheck disable=SC2086
	c0=$(cpu_ticks $ps)
	wrk -t2 -c"$conns" -d"${dur}s" "${s[@]}" "http://127.0.0.1:$port${url:-/}" >"$dir/wrk.txt" 2>&1
	# shellcheck disable=SC2086
	c1=$(cpu_ticks $ps)
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	awk -v c0="$c0" -v c1="$c1" -v d="$dur" -v hz="$(getconf CLK_TCK)" '
		/^Requests\/sec:/ { r = $2 }
		/Non-2xx/ { bad = 1 }
		END { if (bad || r == 0) { print "0 0"; exit } printf "%.0f %.1f\n", r, (c1 - c0) / hz / (r * d) * 1e6 }' "$dir/wrk.txt"
}

tree t1k 1000 initrd
first=$(head -1 "$dir/t1k.macs")
"$new" serve --root "$dir/t1k" >>"$dir/wwserver.log" 2>&1 &
pids+=($!)
"$bin/httpload" -ready -max-wait 30s "http://127.0.0.1:$wport/healthz" >/dev/null
curl -sf -o "$dir/ng/html/kernel" "http://127.0.0.1:$wport/kernel/$first"
kill "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
head -c 300 /dev/urandom >"$dir/ng/html/small"
if [[ " $rows " == *" ipxe2 "* ]]; then
	tree t1k2 1000 fake-twostage
	wrk_cycle_lua "$dir/macs2.lua" "$dir/t1k2.macs" /ipxe/
fi
if [[ " $rows " == *" chunk "* ]]; then
	tree tchunk 50 twostage
	cp "$dir"/tchunk/state/chunks/sha256/* "$dir/ng/html/chunk/"
	ls "$dir/tchunk/state/chunks/sha256" >"$dir/chunks.txt"
fi
chmod -R a+rX "$dir/ng/html"
wrk_cycle_lua "$dir/macs.lua" "$dir/t1k.macs" /ipxe/
printf 'request = function()\n\treturn wrk.format("GET", "/small")\nend\n' >"$dir/small.lua"
wrk_cycle_lua "$dir/chunks.lua" "$dir/chunks.txt" /chunk/
nginx_conf "$dir/ng" "$nport" >"$dir/ng/nginx.conf"

res=$dir/rounds.txt
: >"$res"
for ((i = 1; i <= rounds; i++)); do
	for row in $rows; do
		for who in old new nginx; do
			b=$who
			[[ $who == old ]] && b=$old
			[[ $who == new ]] && b=$new
			read -r rps us < <(measure "$b" "$row")
			echo "$row $who $rps $us $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$res" >&2
		done
	done
done
echo "A: $old"
echo "B: $new"
echo "$rounds rounds x ${dur}s; median req/s, median server CPU µs per request, median load; ratios of the medians"
for row in $rows; do
	awk -v row="$row" '
		function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
		$1 == row { n[$2]++; r[$2, n[$2]] = $3; c[$2, n[$2]] = $4; l[$2, n[$2]] = $5 }
		END {
			for (w in n) { delete x; delete y; delete z
				for (i = 1; i <= n[w]; i++) { x[i] = r[w, i]; y[i] = c[w, i]; z[i] = l[w, i] }
				R[w] = med(x, n[w]); C[w] = med(y, n[w]); L[w] = med(z, n[w]) }
			printf "%-6s old %6.0f req/s %7.1f µs | new %6.0f req/s %7.1f µs | nginx %6.0f req/s %7.1f µs | new/nginx %.2fx req/s, CPU %.2fx; new/old CPU %.2fx | load %.1f\n",
				row, R["old"], C["old"], R["new"], C["new"], R["nginx"], C["nginx"],
				R["new"] / R["nginx"], C["new"] / C["nginx"], C["new"] / C["old"], L["new"]
		}' "$res"
done
