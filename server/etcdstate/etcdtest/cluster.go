package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// memberURL is http://host:port.
func memberURL(host string, port int) url.URL {
	u, _ := url.Parse("http://" + net.JoinHostPort(host, strconv.Itoa(port)))
	return *u
}

// clusterConfigs configures len(clientPorts) members m0, m1, … of one new
// cluster on host, member i in dir/mi. fsync stays on (the default): the
// point of a cluster in tests and benchmarks is etcd's real write path.
func clusterConfigs(dir, host string, clientPorts, peerPorts []int) []*embed.Config {
	var initial []string
	for i, pp := range peerPorts {
		u := memberURL(host, pp)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, u.String()))
	}
	cfgs := make([]*embed.Config, len(clientPorts))
	for i := range clientPorts {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cu, pu := memberURL(host, clientPorts[i]), memberURL(host, peerPorts[i])
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "wwtest"
		cfg.LogLevel = "panic" // shutdown logs "errors" that are not
		cfg.EnableGRPCGateway = false
		cfgs[i] = cfg
	}
	return cfgs
}

// startMembers starts every member (they elect a leader only together)
// and waits until all serve.
func startMembers(cfgs []*embed.Config) ([]*embed.Etcd, error) {
	var es []*embed.Etcd
	closeAll := func() {
		for _, e := range es {
			// Close waits for the client listeners to serve, which a member
			// that was never ready only gives up once its server stops:
			// Close alone hangs forever (a member after it failed to start,
			// or the 60 s timeout below).
			e.Server.HardStop()
			e.Close()
		}
	}
	for _, cfg := range cfgs {
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
		}
		es = append(es, e)
	}
	timeout := time.After(60 * time.Second)
	for _, e := range es {
		select {
		case <-e.Server.ReadyNotify():
		case <-timeout:
			closeAll()
			return nil, errors.New("etcd cluster not ready after 60 s")
		}
	}
	return es, nil
}

// RunCluster runs a cluster of len(clientPorts) members in this process
// and blocks until one stops. It is what a cluster child process runs.
func RunCluster(dir, host string, clientPorts, peerPorts []int) error {
	es, err := startMembers(clusterConfigs(dir, host, clientPorts, peerPorts))
	if err != nil {
		return err
	}
	defer func() {
		for _, e := range es {
			e.Close()
		}
	}()
	fmt.Println("ETCD READY")
	errs := make(chan error, len(es))
	for _, e := range es {
		go func() { errs <- <-e.Err() }()
	}
	return <-errs
}

// StartCluster runs an n-member cluster inside the test process on
// loopback; it is closed at the end of the test.
func StartCluster(t testing.TB, n int) *Etcd {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	for try := 0; try < 5; try++ {
		cps, pps, err := freePorts(n)
		if err != nil {
			t.Fatalf("free ports: %v", err)
		}
		es, err := startMembers(clusterConfigs(filepath.Join(dir, strconv.Itoa(try)), "127.0.0.1", cps, pps))
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(func() {
			for _, e := range es {
				e.Close()
			}
		})
		out := &Etcd{Dir: dir, e: es[0]}
		for _, cp := range cps {
			out.Endpoints = append(out.Endpoints, "http://127.0.0.1:"+strconv.Itoa(cp))
		}
		out.Endpoint = out.Endpoints[0]
		return out
	}
	t.Fatalf("start etcd cluster: %v", lastErr)
	return nil
}

// freePorts returns n client and n peer ports.
func freePorts(n int) (clientPorts, peerPorts []int, err error) {
	for i := 0; i < 2*n; i++ {
		p, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		if i < n {
			clientPorts = append(clientPorts, p)
		} else {
			peerPorts = append(peerPorts, p)
		}
	}
	return clientPorts, peerPorts, nil
}

// joinPorts and splitPorts carry port lists in ChildEnv ("2379,2381,2383").
func joinPorts(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

func splitPorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", f, err)
		}
		out = append(out, p)
	}
	return out, nil
}
