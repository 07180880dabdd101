// Command leasecheck reads every DHCP lease key wwservers keep in etcd
// (server/etcdstate's layout under a prefix) and fails when an address is
// bound to two MACs: two MAC keys naming one address, or an address key
// whose MAC's key names another address. With -acks it also reads
// perfdhcp's received leases (-x l output) and fails when one address was
// ACKed to two clients.
//
//	leasecheck -endpoints http://10.0.0.1:2379 -prefix /wwserver/ [-acks perfdhcp.out]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "etcd endpoints, comma-separated")
	prefix := flag.String("prefix", "/wwserver/", "key prefix")
	acks := flag.String("acks", "", "perfdhcp output with -x l (received leases)")
	p99of := flag.String("p99", "", "only print the p99 OFFER and ACK delays of this perfdhcp output (-x t)")
	flag.Parse()
	if *p99of != "" {
		s, err := p99(*p99of)
		if err != nil {
			fmt.Fprintln(os.Stderr, "leasecheck:", err)
			os.Exit(2)
		}
		fmt.Println(s)
		return
	}
	problems, err := check(strings.Split(*endpoints, ","), *prefix, *acks)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leasecheck:", err)
		os.Exit(2)
	}
	if problems > 0 {
		os.Exit(1)
	}
}

type lease struct {
	MAC   string `json:"mac"`
	State string `json:"state"`
}

func check(endpoints []string, prefix, acks string) (int, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, prefix+"leases/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	byIP := map[string]lease{}      // address key → its lease
	macsOf := map[string][]string{} // address → MAC keys naming it
	macIP := map[string]string{}    // MAC key → address
	for _, kv := range r.Kvs {
		k := strings.TrimPrefix(string(kv.Key), prefix+"leases/")
		switch {
		case strings.HasPrefix(k, "ip/"):
			var l lease
			if err := json.Unmarshal(kv.Value, &l); err != nil {
				return 0, fmt.Errorf("%s: %w", kv.Key, err)
			}
			byIP[strings.TrimPrefix(k, "ip/")] = l
		case strings.HasPrefix(k, "mac/"):
			mac := strings.TrimPrefix(k, "mac/")
			macIP[mac] = string(kv.Value)
			macsOf[string(kv.Value)] = append(macsOf[string(kv.Value)], mac)
		}
	}
	problems := 0
	bad := func(format string, a ...any) {
		problems++
		if problems <= 20 {
			fmt.Printf("DUPLICATE: "+format+"\n", a...)
		}
	}
	bound := 0
	for ip, macs := range macsOf {
		if len(macs) > 1 {
			bad("address %s named by the keys of MACs %v", ip, macs)
		}
	}
	for ip, l := range byIP {
		if l.State == "bound" {
			bound++
		}
		if l.MAC != "" && macIP[l.MAC] != ip {
			bad("address %s held by %s, whose key names %q", ip, l.MAC, macIP[l.MAC])
		}
	}
	acked := 0
	if acks != "" {
		n, err := checkAcks(acks, bad)
		if err != nil {
			return 0, err
		}
		acked = n
	}
	fmt.Printf("leases in etcd: %d addresses (%d bound), %d MACs; ACKed leases read: %d; duplicates: %d\n",
		len(byIP), bound, len(macIP), acked, problems)
	return problems, nil
}

// checkAcks reads perfdhcp's received leases (the "Leases for
// REQUEST-ACK" section of -x l: client_id,address,prefix with client_id
// 01 and the MAC in hex): one address per client.
func checkAcks(path string, bad func(string, ...any)) (int, error) {
	lines, err := section(path, "***Leases for REQUEST-ACK***")
	if err != nil {
		return 0, err
	}
	holder := map[string]string{}
	n := 0
	for _, line := range lines {
		f := strings.Split(line, ",")
		if len(f) < 2 || f[0] == "client_id" {
			continue
		}
		n++
		if m, ok := holder[f[1]]; ok && m != f[0] {
			bad("address %s ACKed to clients %s and %s", f[1], m, f[0])
		}
		holder[f[1]] = f[0]
	}
	return n, nil
}

// section returns the lines after header up to the next "***" line.
func section(path, header string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == header:
			in = true
		case strings.HasPrefix(line, "***"):
			in = false
		case in && line != "":
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// p99 prints the 99th percentile of perfdhcp's per-exchange delays (-x t:
// "sent / received: S / R" lines) for DISCOVER→OFFER and REQUEST→ACK.
func p99(path string) (string, error) {
	var parts []string
	for _, ex := range []string{"DISCOVER-OFFER", "REQUEST-ACK"} {
		lines, err := section(path, "***Timestamps for packets: "+ex+"***")
		if err != nil {
			return "", err
		}
		var d []float64
		for _, line := range lines {
			var s, r float64
			if _, err := fmt.Sscanf(line, "sent / received: %f / %f", &s, &r); err == nil {
				d = append(d, r-s)
			}
		}
		if len(d) == 0 {
			return "", fmt.Errorf("%s: no %s timestamps (perfdhcp -x t)", path, ex)
		}
		sort.Float64s(d)
		parts = append(parts, fmt.Sprintf("%.0f ms", 1000*d[(len(d)*99)/100]))
	}
	return strings.Join(parts, " / "), nil
}
