package dhcp

import (
	"context"
	"encoding/binary"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

const benchNodes = `
[profiles.default]
image = "debian"
[nodes.n001]
profiles = ["default"]
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.201.0.11"
`

// benchPackets makes DISCOVER and REQUEST datagrams for n distinct MACs.
func benchPackets(b *testing.B, n int) (discovers, requests [][]byte) {
	for i := 0; i < n; i++ {
		hw := net.HardwareAddr{0x02, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(hw[2:], uint32(i))
		d, err := dhcpv4.NewDiscovery(hw, withArch(7), withVendor("PXEClient:Arch:00007:UNDI:003016"))
		if err != nil {
			b.Fatal(err)
		}
		discovers = append(discovers, d.ToBytes())
		ip := net.IPv4(10, 201, byte(1+i>>8), byte(i))
		r, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			serverID("10.201.0.1"), requestedIP(ip.String()), withArch(7))
		if err != nil {
			b.Fatal(err)
		}
		requests = append(requests, r.ToBytes())
	}
	return discovers, requests
}

var benchConfig = testConfig{rangeStart: "10.201.1.0", rangeEnd: "10.201.255.254", nodes: benchNodes}

// BenchmarkDecideDORA: one DISCOVER + REQUEST through parse → handler →
// lease table → reply encoding, without sockets (one core).
func BenchmarkDecideDORA(b *testing.B) {
	e := newEnv(b, benchConfig)
	snap := e.store.Current()
	n := 50_000
	disc, _ := benchPackets(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := e.srv.decide(disc[i%n], nil, false, snap, e.now)
		if o.reply == nil {
			b.Fatalf("no offer: %s", o.drop)
		}
		_ = o.reply.ToBytes()
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(o.reply.ClientHWAddr), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			serverID("10.201.0.1"), requestedIP(o.reply.YourIPAddr.String()))
		b.StopTimer()
		data := req.ToBytes()
		b.StartTimer()
		o = e.srv.decide(data, nil, false, snap, e.now)
		if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeAck {
			b.Fatalf("no ack: %s", o.drop)
		}
		_ = o.reply.ToBytes()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "DORA/s")
}

// BenchmarkServePipeline: DISCOVERs through the read loop, queue and
// worker pool to WriteTo on an in-memory conn.
func BenchmarkServePipeline(b *testing.B) {
	e := newEnv(b, benchConfig)
	srv, err := New(Options{Store: e.store, Log: quietLog(), Registerer: prometheus.NewRegistry(), QueueSize: 4096})
	if err != nil {
		b.Fatal(err)
	}
	disc, _ := benchPackets(b, 20_000)
	c := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.serve(ctx, []servedConn{{conn: c}}, 2) }()
	// At most window requests in flight, like clients waiting for their
	// offers (the queue never overflows, so every request is answered).
	window := make(chan struct{}, 256)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			window <- struct{}{}
			c.in <- disc[i%len(disc)]
		}
	}()
	for i := 0; i < b.N; i++ {
		<-c.out
		<-window
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "offers/s")
	cancel()
	<-done
}
