package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/dhcp/netnstest"
	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
)

// Two wwserver processes share one pool through a 3-member etcd cluster
// (real Raft, each member fsyncing its WAL; each server on its own member
// first), with lease claims batched (the default). perfdhcp runs DORAs
// for 90 clients over the 100-address pool at a modest rate, so the
// servers contend for nearly every address. No address may be ACKed to
// two clients (perfdhcp's received leases) nor held by two MACs in etcd,
// and the servers must have written through the batching lease writer.
func TestTwoServersThreeMemberEtcdNoDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries, runs a 3-member etcd, two servers and perfdhcp (make unit runs it)")
	}
	netnstest.Require(t, "perfdhcp", "curl")
	sn := newSharedNet(t, 2)
	etcd := etcdtest.StartClusterProcessIn(t, []string{"ip", "netns", "exec", sn.servers[0]}, "10.203.0.1",
		[]int{2379, 2381, 2383}, []int{2380, 2382, 2384})
	startServersOn(t, sn, func(i int) []string {
		return []string{etcd.Endpoints[i], etcd.Endpoints[2]}
	})
	out, err := nsCmd(sn.client, "perfdhcp", "-4", "-l", "br0", "-r", "100", "-R", "90", "-p", "15", "-W", "1000000", "-x", "l").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Statistics") {
		t.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	acked := ackedLeases(t, string(out))
	byIP := map[string]string{}
	for _, a := range acked {
		if c, dup := byIP[a.ip]; dup && c != a.client {
			t.Errorf("address %s ACKed to clients %s and %s", a.ip, c, a.client)
		}
		byIP[a.ip] = a.client
	}
	ls := leasesInEtcd(t, sn, etcd)
	macs := uniqueLeases(t, ls)
	batches := 0
	for i := range sn.servers {
		batches += metricValue(t, sn, fmt.Sprintf("10.203.0.%d", i+1), "wwserver_etcd_lease_batch_size_count")
	}
	t.Logf("%d ACKs for %d addresses; %d leases in etcd; %d lease transactions", len(acked), len(byIP), len(ls), batches)
	if len(acked) < 100 || len(macs) < 40 {
		t.Fatalf("%d ACKs, %d MACs with leases in etcd: too few to prove anything", len(acked), len(macs))
	}
	if batches == 0 {
		t.Fatal("no lease transaction went through the batching writer")
	}
}

type ackedLease struct{ client, ip string }

// ackedLeases reads perfdhcp's "Leases for REQUEST-ACK" section (-x l):
// client_id,address,prefix lines.
func ackedLeases(t *testing.T, out string) []ackedLease {
	t.Helper()
	i := strings.Index(out, "***Leases for REQUEST-ACK***")
	if i < 0 {
		t.Fatalf("no ACKed leases in perfdhcp's output:\n%s", out)
	}
	var ls []ackedLease
	for _, line := range strings.Split(out[i:], "\n")[1:] {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "***") {
			break
		}
		f := strings.Split(line, ",")
		if len(f) < 2 || f[0] == "client_id" {
			continue
		}
		ls = append(ls, ackedLease{client: f[0], ip: f[1]})
	}
	return ls
}

// metricValue reads one unlabelled sample from a server's /metrics.
func metricValue(t *testing.T, sn *sharedNet, addr, name string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", sn.client, "curl", "-sSf", "http://"+addr+":9873/metrics").Output()
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics of %s: %q: %v", addr, line, err)
			}
			return int(n)
		}
	}
	t.Fatalf("metrics of %s: no %s", addr, name)
	return 0
}
