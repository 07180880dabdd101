package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// netCounters are the kernel's counters that tell where a straggler's time
// went: per namespace, TCP retransmissions and timeouts, SYN retransmits,
// accept queue overflows; machine-wide, packets the network stack's input
// queue (netdev_max_backlog, which a veth feeds) dropped.
var netCounters = []string{"Tcp:RetransSegs", "TcpExt:TCPTimeouts", "TcpExt:TCPSynRetrans", "TcpExt:ListenOverflows",
	"TcpExt:ListenDrops", "TcpExt:TCPLossProbes", "TcpExt:TCPBacklogDrop", "TcpExt:TCPSpuriousRTOs", "TcpExt:TCPDSACKRecv",
	"TcpExt:TCPDSACKOldSent", "TcpExt:PruneCalled", "TcpExt:RcvPruned", "TcpExt:TCPRcvQDrop", "TcpExt:TCPOFODrop",
	"TcpExt:TCPZeroWindowDrop", "TcpExt:TCPLostRetransmit"}

// nsNetCounters reads netCounters in namespace ns (/proc/net/snmp and
// /proc/net/netstat as seen from inside it). Missing files give nil.
func nsNetCounters(ctx context.Context, ns, iface string) map[string]int64 {
	out, err := nsCommand(ctx, ns, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		return nil
	}
	c := parseNetCounters(string(out))
	// The veth's own drops (sysfs as `ip netns exec` mounts it for ns).
	for _, dir := range []string{"rx_dropped", "tx_dropped"} {
		b, err := nsCommand(ctx, ns, "cat", "/sys/class/net/"+iface+"/statistics/"+dir).Output()
		if v, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && perr == nil {
			c[iface+":"+dir] = v
		}
	}
	return c
}

// parseNetCounters reads the "Prefix: names" / "Prefix: values" line pairs
// of /proc/net/snmp and /proc/net/netstat.
func parseNetCounters(text string) map[string]int64 {
	all := map[string]int64{}
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) < 2 || len(names) != len(values) || names[0] != values[0] {
			continue
		}
		if _, err := strconv.ParseInt(values[1], 10, 64); err != nil {
			continue // a names line followed by another names line
		}
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseInt(values[j], 10, 64); err == nil {
				all[names[0]+names[j]] = v
			}
		}
		i++
	}
	want := map[string]int64{}
	for _, k := range netCounters {
		if v, ok := all[k]; ok {
			want[k] = v
		}
	}
	return want
}

// softnetDrops is the machine's sum of /proc/net/softnet_stat's second
// column (packets dropped because a CPU's input queue was full); -1 when
// unknown.
func softnetDrops() int64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return -1
	}
	var sum int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 16, 64)
		if err != nil {
			return -1
		}
		sum += v
	}
	return sum
}

// netSnapshot is the counters of both namespaces and the machine.
type netSnapshot struct {
	server, client map[string]int64
	softnet        int64
}

func (ns *namespaces) netSnapshot(ctx context.Context, p netPlan) netSnapshot {
	return netSnapshot{server: nsNetCounters(ctx, ns.server, p.ServerIf), client: nsNetCounters(ctx, ns.client, p.ClientIf),
		softnet: softnetDrops()}
}

// netDelta is what changed between a and b, as "server X n, client Y m,
// softnet drops k" (counters that stayed at 0 left out).
func netDelta(a, b netSnapshot) string {
	var parts []string
	side := func(name string, x, y map[string]int64) {
		keys := make([]string, 0, len(y))
		for k := range y {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if d := y[k] - x[k]; d != 0 {
				parts = append(parts, fmt.Sprintf("%s %s %d", name, k, d))
			}
		}
	}
	side("server", a.server, b.server)
	side("client", a.client, b.client)
	if a.softnet >= 0 && b.softnet >= 0 {
		parts = append(parts, fmt.Sprintf("softnet drops (machine) %d", b.softnet-a.softnet))
	}
	if len(parts) == 0 {
		return "no TCP retransmissions, timeouts or drops"
	}
	return strings.Join(parts, ", ")
}
