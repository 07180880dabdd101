package main

import (
	"net"
	"strconv"

	"github.com/wwcluster/ww/server/config"
)

// sharedPeers gives iPXE scripts the live servers of a cluster sharing
// state through etcd, this one (as nodes reach it, from wwserver.toml)
// first: each download falls back to the next (provision.Peers).
type sharedPeers struct {
	s     *shared
	store *config.Store
}

func (p sharedPeers) Servers() []string {
	srv := p.store.Current().Server
	return p.s.Servers(net.JoinHostPort(srv.Address, strconv.Itoa(srv.Port)))
}
