// Command etcdrun runs etcd (the embedded server of the version wwserver's
// client is built with) for benchmarks and labs: one member, or with
// -members N a cluster of N members in this process (real Raft between
// them, each fsyncing its own WAL), member i on client port C+2i and peer
// port P+2i:
//
//	etcdrun -dir DIR -host 10.0.0.1 -client-port 2379 -peer-port 2380 [-members 3]
//
// It prints "ETCD READY" once it serves and stops on SIGTERM/SIGINT.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
)

func main() {
	dir := flag.String("dir", "", "data directory (required)")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	cport := flag.Int("client-port", 2379, "client port (of the first member)")
	pport := flag.Int("peer-port", 2380, "peer port (of the first member)")
	members := flag.Int("members", 1, "cluster members (1-7)")
	flag.Parse()
	if *dir == "" || *members < 1 || *members > 7 {
		fmt.Fprintln(os.Stderr, "etcdrun: -dir is required; -members must be 1-7")
		os.Exit(2)
	}
	var err error
	if *members == 1 {
		err = etcdtest.Run(*dir, *host, *cport, *pport)
	} else {
		var cps, pps []int
		for i := 0; i < *members; i++ {
			cps, pps = append(cps, *cport+2*i), append(pps, *pport+2*i)
		}
		err = etcdtest.RunCluster(*dir, *host, cps, pps)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdrun:", err)
		os.Exit(1)
	}
}
