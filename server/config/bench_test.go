package config

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// managedText is a nodes file of n nodes as `wwserver node add` writes it.
func managedText(n int) string {
	var m strings.Builder
	m.WriteString("[nodes]\n")
	for i := range n {
		fmt.Fprintf(&m, "[nodes.c%06d]\nprofiles = [\"default\"]\n[nodes.c%06d.network]\n[nodes.c%06d.network.eth0]\n"+
			"hwaddr = \"52:54:%02x:%02x:%02x:%02x\"\nipaddr = \"10.%d.%d.%d\"\n",
			i, i, i, i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff, 16+i>>16&0xff, i>>8&0xff, i&0xff)
	}
	return m.String()
}

// BenchmarkParseNodesFiles: loading a tree of 10,000 and 100,000 nodes
// (server start and reload, check, every CLI edit before its change).
func BenchmarkParseNodesFiles(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run("nodes="+strconv.Itoa(n), func(b *testing.B) {
			srcs := []Source{
				{Path: "nodes.toml", Data: []byte("[profiles.default]\nimage = \"debian\"\n")},
				{Path: "nodes.d/managed.toml", Data: []byte(managedText(n))},
			}
			b.ReportAllocs()
			for b.Loop() {
				ns, err := ParseNodesFiles(srcs)
				if err != nil || len(ns.List) != n {
					b.Fatal(err)
				}
			}
		})
	}
}
