// Command etcdrun runs a single-member etcd (the embedded server of the
// version wwserver's client is built with) for benchmarks and labs:
//
//	etcdrun -dir DIR -host 10.0.0.1 -client-port 2379 -peer-port 2380
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
	cport := flag.Int("client-port", 2379, "client port")
	pport := flag.Int("peer-port", 2380, "peer port")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "etcdrun: -dir is required")
		os.Exit(2)
	}
	if err := etcdtest.Run(*dir, *host, *cport, *pport); err != nil {
		fmt.Fprintln(os.Stderr, "etcdrun:", err)
		os.Exit(1)
	}
}
