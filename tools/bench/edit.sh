#!/usr/bin/env bash
# tools/bench/edit.sh: what editing a big node database costs (make bench-edit;
# BENCHMARKS.md "Editing nodes"). Not part of make test.
#
# For each size (default 10000 and 100000 nodes) it makes a served tree with
# `wwserver init`, imports that many nodes from a MAC list (`node import`,
# MAC and address each), then times, with /usr/bin/time (wall clock, user and
# system CPU, peak RSS):
#   node add   one more node
#   node set   one tag on one node
#   check      the whole tree
#   nodes      list every node (a full load, as the server's)
# Each step runs EDIT_REPEAT times (default 3) on the same tree; the table
# has the median of each column. EDIT_BASELINE=/path/to/old/wwserver runs
# every step with that binary too (on its own copy of the tree), for a
# before/after table.
#
# Environment: EDIT_DIR (default /tmp/wwedit), EDIT_SIZES ("10000 100000"),
# EDIT_REPEAT (3), EDIT_BASELINE, GO (go).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${EDIT_DIR:-/tmp/wwedit}
sizes=${EDIT_SIZES:-"10000 100000"}
repeat=${EDIT_REPEAT:-3}
GO=${GO:-go}
[ -x /usr/bin/time ] || { echo "edit.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

mkdir -p "$dir/bin"
(cd "$repo" && CGO_ENABLED=0 $GO build -o "$dir/bin/wwclient" ./wwclient && $GO build -o "$dir/bin/wwserver" ./server/cmd/wwserver)
bins=("new:$dir/bin/wwserver")
if [ -n "${EDIT_BASELINE:-}" ]; then
	bins+=("baseline:$EDIT_BASELINE")
fi

# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure LABEL TIMES BIN ARGS...: runs BIN ARGS TIMES times ("@" in an
# argument becomes the run's number, two digits) and prints one table row of medians.
# A run that fails stops the script.
measure() {
	local label=$1 times=$2 bin=$3
	shift 3
	local i out args wall=() cpu=() rss=()
	for ((i = 1; i <= times; i++)); do
		args=("${@//@/$(printf %02d "$i")}")
		if ! out=$(/usr/bin/time -f "TIME %e %U %S %M" "$bin" "${args[@]}" 2>&1 >/dev/null) && ! grep -q '^check' <<<"$label"; then
			echo "edit.sh: $bin ${args[*]} failed: $out" >&2
			exit 1
		fi
		read -r _ w u s m <<<"$(grep '^TIME ' <<<"$out")"
		wall+=("$w")
		cpu+=("$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')")
		rss+=("$m")
	done
	printf '| %s | %s s | %s s | %s MB |\n' "$label" \
		"$(printf '%s\n' "${wall[@]}" | median)" "$(printf '%s\n' "${cpu[@]}" | median)" \
		"$(($(printf '%s\n' "${rss[@]}" | median) / 1024))"
}

echo "machine: $(nproc) CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$repo" log -1 --format=%h)"
for n in $sizes; do
	width=${#n}
	awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "02:57:%02x:%02x:%02x:%02x\n", int(i / 16777216) % 256, int(i / 65536) % 256, int(i / 256) % 256, i % 256 }' >"$dir/macs-$n.txt"
	for b in "${bins[@]}"; do
		name=${b%%:*} bin=${b#*:}
		tree=$dir/tree-$n-$name
		rm -rf "$tree"
		"$bin" init "$tree" --wwclient "$dir/bin/wwclient" --address 10.0.0.1 >/dev/null
		# A kernel header in place of the placeholder, so check can say "ok".
		printf 'MZ%*sHdrS%*s' 512 '' 60 '' >"$tree/images/default/rootfs/boot/vmlinuz-0-placeholder"
		echo
		echo "$n nodes, $name ($bin), medians of $repeat runs (import: 1):"
		echo
		echo "| step | wall | CPU (user+sys) | peak RSS |"
		echo "|---|---|---|---|"
		measure "node import ($n nodes, MAC + address each)" 1 "$bin" node import "$dir/macs-$n.txt" \
			--names "c[$(printf "%0${width}d" 1)-$n]" --ipaddr 10.16.0.1 --root "$tree"
		measure "node add (1 node)" "$repeat" "$bin" node add "extra@" --hwaddr "02:58:00:00:00:@" --root "$tree"
		measure "node set (1 node, 1 tag)" "$repeat" "$bin" node set "c$(printf "%0${width}d" 1)" --tag rack=r@ --root "$tree"
		measure "check" "$repeat" "$bin" check --root "$tree"
		measure "nodes (list all: a full load)" "$repeat" "$bin" nodes --root "$tree"
		"$bin" check --root "$tree" >/dev/null 2>&1 || echo "(check of the $name tree did not say ok)"
	done
done
