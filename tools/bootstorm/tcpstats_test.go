package main

import "testing"

func TestParseNetCounters(t *testing.T) {
	text := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Tcp: RtoAlgorithm RetransSegs\nTcp: 1 17\n" +
		"TcpExt: SyncookiesSent ListenOverflows TCPTimeouts TCPSynRetrans\nTcpExt: 0 3 5 2\n"
	got := parseNetCounters(text)
	want := map[string]int64{"Tcp:RetransSegs": 17, "TcpExt:ListenOverflows": 3, "TcpExt:TCPTimeouts": 5, "TcpExt:TCPSynRetrans": 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["Ip:Forwarding"]; ok {
		t.Errorf("unwanted counter kept: %v", got)
	}
	d := netDelta(netSnapshot{server: map[string]int64{"Tcp:RetransSegs": 1}, softnet: 4},
		netSnapshot{server: map[string]int64{"Tcp:RetransSegs": 9}, softnet: 4})
	if d != "server Tcp:RetransSegs 8, softnet drops (machine) 0" {
		t.Errorf("delta %q", d)
	}
}
