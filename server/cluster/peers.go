package cluster

import (
	"net"
	"strconv"

	"github.com/wwcluster/ww/server/config"
)

// Peers gives iPXE scripts the live servers of a cluster sharing
// state through etcd, this one (as nodes reach it, from wwserver.toml)
// first: each download falls back to the next (provision.Peers).
type Peers struct {
	Member *Member
	Store  *config.Store
}

func (p Peers) Servers() []string {
	srv := p.Store.Current().Server
	return p.Member.Servers(net.JoinHostPort(srv.Address, strconv.Itoa(srv.Port)))
}
