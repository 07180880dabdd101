# shellcheck shell=bash
# tools/bench/rmem.sh, sourced by the DHCP benchmarks. perfdhcp plays tens
# of thousands of clients through one socket with the kernel's default
# receive buffer (212992 B), so a burst of replies (a batch of ACKs released
# by one lease-file sync, say) overflows it: the tester's loss, not the
# servers' (real clients each have their own socket). net.core.rmem_default
# is not settable inside a namespace here, so client_rmem_raise raises it
# for the run and client_rmem_restore (call it from the EXIT trap) puts it
# back; it only lets sockets queue more, and every server in the run gets
# the same.
RMEM_OLD=""
# client_rmem_raise BYTES (0: leave it)
client_rmem_raise() {
	local want=$1 max
	RMEM_OLD=$(sysctl -n net.core.rmem_default)
	((want > RMEM_OLD)) || return 0
	max=$(sysctl -n net.core.rmem_max)
	sysctl -qw net.core.rmem_default="$((want < max ? want : max))"
}
client_rmem_restore() {
	[[ -n "$RMEM_OLD" ]] || return 0
	sysctl -qw net.core.rmem_default="$RMEM_OLD" || true
	RMEM_OLD=""
}
