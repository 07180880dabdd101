#!/usr/bin/env bash
# make storm: a mass reboot from a realistic image, against wwserver and
# against nginx serving the same files, in one run (not part of make test).
# Needs root (network namespaces). See BENCHMARKS.md, "Boot storm".
#
# Steps: build the binaries; build (or reuse, cached) the realistic node
# image with initramfs/debian-image.sh hpc; write a served tree with
# `wwserver init` + gentree (N nodes, secure mode as shipped, two-stage boot
# as shipped); time a cold `wwserver build`; then `bootstorm storm` runs, in
# its own namespaces: full (DHCP + TFTP + HTTP against wwserver), http (HTTP
# only, wwserver), nginx (HTTP only, nginx serving what wwserver served, same
# address) and raw (nginx serving the image's chunks as one file, each node
# reading it in 4 ranges at once: the rate the veth gives those bytes).
#
# Environment (all optional):
#   STORM_DIR          work directory (default /tmp/wwstorm): binaries, tree, results
#   STORM_NODES        simulated nodes (default 200)
#   STORM_IMAGE        a root filesystem to use instead of the hpc image
#   STORM_IMAGE_BYTES  bytes of the image each node reads (default 0: the
#                      whole image; N: a slice, two-stage the leading chunks
#                      holding N bytes, initrd a Range; the 1,000-node run:
#                      STORM_NODES=1000 STORM_IMAGE_BYTES=33554432)
#   STORM_BOOT         twostage (default, as nodes boot) or initrd (iPXE
#                      loads the whole gzip image; no raw run then)
#   STORM_VERIFY       1: nodes check each chunk's sha256 as wwclient does;
#                      0 (default): not here, where the 2 cores the nodes
#                      share with the server would pay ~15 CPU-s per 25 GB
#                      (a real node hashes on its own CPU; TestStorm20 checks)
#   STORM_NODE_RMEM    each node's TCP receive buffer maximum (default 262144;
#                      the nodes share this host's tcp_mem; 0: the host's)
#   STORM_BLOCK        BENCHMARKS.md block (default storm for the whole
#                      image, storm-slice for a slice)
#   STORM_ARRIVAL      all (default: mass reboot) or ramp; STORM_RAMP (default 60s)
#   STORM_POLL_INTERVAL wwclient interval after boot (default 10s); STORM_POLL_FOR (default 30s)
#   STORM_MODES        default full,http,nginx,raw (initrd: full,http,nginx)
#   STORM_TIMEOUT      bound of each run (default 20m)
#   STORM_PERF         set: profile the server with perf during each run (perf-*.txt in results)
#   STORM_WRITE        1 (default): put the table into BENCHMARKS.md; 0: don't
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${STORM_DIR:-/tmp/wwstorm}
nodes=${STORM_NODES:-200}
image_bytes=${STORM_IMAGE_BYTES:-0}
boot=${STORM_BOOT:-twostage}
modes=${STORM_MODES:-full,http,nginx,raw}
[ "$boot" = twostage ] || modes=${STORM_MODES:-full,http,nginx}
block=${STORM_BLOCK:-storm}
[ "$image_bytes" = 0 ] || block=${STORM_BLOCK:-storm-slice}
bin=$dir/bin
res=$dir/results
log() { printf '%s storm: %s\n' "$(date -u +%T)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "storm: needs root (network namespaces)" >&2; exit 1; }
nginx=$(command -v nginx || true)
[ -n "$nginx" ] || { echo "storm: nginx missing (make storm unpacks it under build/nginx)" >&2; exit 1; }

mkdir -p "$bin" "$res"
log "building binaries into $bin"
GO=${GO:-go}
(cd "$repo" && CGO_ENABLED=0 $GO build -trimpath -o "$bin/wwclient" ./wwclient &&
	$GO build -trimpath -o "$bin/wwserver" ./server/cmd/wwserver &&
	$GO build -trimpath -o "$bin/gentree" ./tools/bench/cmd/gentree &&
	$GO build -trimpath -o "$bin/bootstorm" ./tools/bootstorm)

image=${STORM_IMAGE:-}
if [ -z "$image" ]; then
	log "realistic image: initramfs/debian-image.sh hpc (cached under build/hpc-image)"
	"$repo/initramfs/debian-image.sh" hpc "$repo/build/hpc-image" >&2
	image=$repo/build/hpc-image/rootfs
fi
[ -d "$image/boot" ] || { echo "storm: $image has no boot/ (kernel)" >&2; exit 1; }
img_bytes=$(du -sb "$image" | cut -f1)
img_files=$(find "$image" | wc -l)
log "image $image: $img_bytes bytes, $img_files files"

tree=$dir/tree
stamp="$image $img_bytes $img_files $nodes $boot"
if [ ! -f "$tree/.storm-stamp" ] || [ "$(cat "$tree/.storm-stamp")" != "$stamp" ]; then
	log "writing the served tree ($nodes nodes)"
	rm -rf "$tree"
	"$bin/wwserver" init "$tree" --wwclient "$bin/wwclient" --image-from "$image" --address 10.100.0.1 --listen :9873 >&2
	"$bin/gentree" -root "$tree" -n "$nodes" -boot "$boot" -update-interval 60s -source-check true
	printf '%s\n' "$stamp" >"$tree/.storm-stamp"
fi

# The storm network's wwserver.toml (DHCP, TFTP, address) before the build:
# what the server builds depends on it.
"$bin/bootstorm" storm -root "$tree" -modes full -adapt-only
log "cold build: wwserver build from an empty state/"
rm -rf "$tree/state"
sync
t0=$(date +%s.%N)
"$bin/wwserver" build --root "$tree" --workers "$(nproc)" >&2
t1=$(date +%s.%N)
build_s=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}")
state_bytes=$(du -sb "$tree/state" | cut -f1)
image_gz=$(find "$tree/state" -type f -printf '%s\n' | sort -n | tail -1)
log "cold build: ${build_s}s, state/ $state_bytes bytes, largest file ${image_gz:-?} bytes"

log "storm: $nodes nodes, boot $boot, modes $modes, load: $(cut -d' ' -f1-3 /proc/loadavg)"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$res/docroot" "$res/nginx"
"$bin/bootstorm" storm -root "$tree" -wwserver "$bin/wwserver" -nginx "$nginx" -n "$nodes" \
	-modes "$modes" -node-rmem "${STORM_NODE_RMEM:-262144}" -verify="$([ "${STORM_VERIFY:-0}" = 1 ] && echo true || echo false)" -arrival "${STORM_ARRIVAL:-all}" -ramp "${STORM_RAMP:-60s}" \
	-image-bytes "$image_bytes" -poll-interval "${STORM_POLL_INTERVAL:-10s}" -poll-for "${STORM_POLL_FOR:-30s}" \
	-timeout "${STORM_TIMEOUT:-20m}" ${STORM_PERF:+-perf} -out "$res" -json "$res/storm.json" | tee "$res/table.md"
{
	echo
	echo "image: $image, $img_bytes bytes in $img_files files; boot $boot;" \
		"each node read $image_bytes bytes of it (0 = all); chunk sha256 checked: ${STORM_VERIFY:-0}"
	echo "cold wwserver build of $nodes nodes: ${build_s}s, state/ $state_bytes bytes"
	echo "commit $(git -C "$repo" log -1 --format=%h); $(nproc) CPUs; load average before $load0, after $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
} | tee -a "$res/table.md"
rm -rf "$res/docroot" # up to GBs of mirrored files
if [ "${STORM_WRITE:-1}" = 1 ]; then
	# shellcheck source=tools/bench/splice.sh
	. "$repo/tools/bench/splice.sh"
	splice_table "$repo/BENCHMARKS.md" "$block" \
		"Measured $(date -u '+%F %H:%M UTC') on commit $(git -C "$repo" log -1 --format=%h) by \`make storm\` ($nodes nodes, boot $boot, image bytes per node ${image_bytes} (0 = all), arrival ${STORM_ARRIVAL:-all})." \
		"$res/table.md"
fi
