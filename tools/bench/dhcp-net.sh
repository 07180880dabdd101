# tools/bench/dhcp-net.sh, sourced by the shared-lease DHCP benchmarks:
# dhcp_net BASE NET makes namespaces BASE-c (a bridge br0 at NET.0.250/16,
# where perfdhcp runs) and BASE-0, BASE-1 (eth0 at NET.0.1 and NET.0.2,
# veths on the bridge); dhcp_cleanup (the EXIT trap) stops the processes
# in pids, removes the namespaces and the directory work.
dhcp_net() {
	local base=$1 net=$2 i ns
	ip netns add "$base-c"
	ip -n "$base-c" link set lo up
	ip -n "$base-c" link add br0 type bridge
	ip -n "$base-c" addr add "$net.0.250/16" dev br0
	ip -n "$base-c" link set br0 up
	for i in 0 1; do
		ns=$base-$i
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip -n "$ns" link add eth0 type veth peer name "v$i" netns "$base-c"
		ip -n "$ns" addr add "$net.0.$((i + 1))/16" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$base-c" link set "v$i" master br0
		ip -n "$base-c" link set "v$i" up
	done
}

dhcp_cleanup() {
	local p n
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	for n in c 0 1; do ip netns del "$base-$n" 2>/dev/null || true; done
	rm -rf "$work"
}
