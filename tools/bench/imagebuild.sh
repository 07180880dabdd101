#!/usr/bin/env bash
# tools/bench/imagebuild.sh IMAGE_DIR [RUNS]
# Cold build of one image by `wwserver build`, single-stage (gzip cpio,
# image.img.gz) against two-stage (zstd chunks + index), RUNS times each
# (default 2), alternating, in one run: wall and CPU seconds, peak RSS and
# what was written. state/ is removed before every build (cold: nothing to
# reuse). Used for BENCHMARKS.md (Two-stage boot); not part of make test.
set -euo pipefail
img=${1:?usage: $0 IMAGE_DIR [RUNS]}
runs=${2:-2}
bin=${WW_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/bin}
[ -d "$img/rootfs" ] && img=$img/rootfs
work=$(mktemp -d "${TMPDIR:-/tmp}/imagebuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
"$bin/wwserver" init "$tree" --wwclient "$bin/wwclient" --address 127.0.0.1 >/dev/null
rm -rf "$tree/images/default/rootfs"
cp -a "$img" "$tree/images/default/rootfs"
size=$(du -sm --exclude=boot "$tree/images/default/rootfs" | cut -f1)
echo "image: $img ($size MiB without /boot), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| build | run | wall s | cpu s (user+sys) | peak RSS MiB | written |\n|---|---|---|---|---|---|\n'
for r in $(seq 1 "$runs"); do
  for mode in initrd twostage; do
    printf '[profiles.default]\nimage = "default"\nboot = "%s"\nsystem_overlays = ["wwinit"]\nruntime_overlays = ["generic"]\n[nodes.b001]\nprofiles = ["default"]\n[nodes.b001.network.eth0]\nhwaddr = "52:54:00:55:00:01"\n' "$mode" > "$tree/nodes.toml"
    rm -rf "$tree/state"
    sync
    out=$( { /usr/bin/time -f 'TIME %e %U %S %M' "$bin/wwserver" build --root "$tree" 2>&1; } 2>&1 )
    t=$(sed -n 's/^TIME //p' <<<"$out")
    read -r wall user sys rss <<<"$t"
    written=$(du -sh "$tree/state" | cut -f1)
    name=$([ "$mode" = initrd ] && echo "gzip cpio (single-stage)" || echo "zstd chunks (two-stage)")
    printf '| %s | %d | %s | %.1f | %d | %s |\n' "$name" "$r" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" $((rss / 1024)) "$written"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
