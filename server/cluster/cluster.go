// Package cluster is this server's part in a cluster of wwservers sharing
// state through etcd ([state] backend = "etcd"): it publishes this server
// and its tree fingerprints, reads who else is alive, and shares DHCP
// leases and node status.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp"
	"github.com/wwcluster/ww/server/etcdstate"
	"github.com/wwcluster/ww/server/status"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// publishEvery is how often a server republishes its fingerprints and
// reads the list of live servers.
const publishEvery = 10 * time.Second

// serversEvery is how often the list of live servers is read between
// publications: a server that joins or leaves changes who answers which
// DHCP clients (dhcp.PoolPeers) within this time, not publishEvery.
const serversEvery = 2 * time.Second

// retryEvery is how often it tries again while etcd is unreachable, so
// /healthz recovers within about a second of etcd answering again (it
// waited for the next publishEvery tick, and longer while the etcd client's
// reconnect backoff had grown: up to 25 s).
const retryEvery = time.Second

// statusPublishEvery batches status writes to etcd: a 1,000-node storm is
// a few transactions per interval, not one per request.
const statusPublishEvery = 500 * time.Millisecond

// Member is this server's part in a cluster of wwservers that keep leases
// and node status in etcd ([state] backend = "etcd" in wwserver.toml).
type Member struct {
	c   *etcdstate.Client
	log *slog.Logger
	// balance: publish the DHCP pool so that the servers sharing it split
	// its DISCOVERs (state.etcd.answer_every_discover = false).
	balance bool

	mu       sync.Mutex
	servers  []etcdstate.ServerInfo // live servers, by ID
	disagree string                 // why the servers' trees differ; "" when they agree
	err      error                  // last failure talking to etcd
}

// Open connects to etcd when wwserver.toml asks for it (nil otherwise).
// reg receives the lease writer's metrics (may be nil).
func Open(srv *config.Server, log *slog.Logger, reg prometheus.Registerer) (*Member, error) {
	if srv.State.Backend != config.BackendEtcd {
		return nil, nil
	}
	e := srv.State.Etcd
	id := e.ServerID
	if id == "" {
		id, _ = os.Hostname()
	}
	c, err := etcdstate.Connect(etcdstate.Options{
		Endpoints: e.Endpoints, CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile,
		Prefix: e.Prefix, Timeout: e.Timeout.Duration, ServerID: id, Log: log,
		LeaseBatch: e.LeaseBatch, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	log.Info("state shared through etcd", "endpoints", e.Endpoints, "server_id", id, "lease_batch", e.LeaseBatch)
	return &Member{c: c, log: log, balance: !e.AnswerEveryDiscover}, nil
}

func (s *Member) Close() error { return s.c.Close() }

// DHCPLeases adapts the etcd lease operations to the DHCP server.
func (s *Member) DHCPLeases() dhcp.SharedLeases { return etcdLeases{s.c, s} }

type etcdLeases struct {
	c *etcdstate.Client
	m *Member
}

// PoolPeers: the servers that publish this server's DHCP pool, by ID.
func (e etcdLeases) PoolPeers() (self, n int) { return e.m.poolPeers() }

func (s *Member) poolPeers() (self, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, 1 // not knowing who is alive: answer all (etcd decides)
	}
	pool := ""
	for _, sv := range s.servers {
		if sv.ID == s.c.ID() {
			pool = sv.DHCPPool
		}
	}
	if pool == "" {
		return 0, 1
	}
	self = -1
	for _, sv := range s.servers { // sorted by ID
		if sv.DHCPPool == pool {
			if sv.ID == s.c.ID() {
				self = n
			}
			n++
		}
	}
	return self, n
}

func (e etcdLeases) Claim(ctx context.Context, l dhcp.Lease) (dhcp.Lease, error) {
	got, err := e.c.Claim(ctx, etcdstate.Lease{IP: l.IP, MAC: l.MAC, Node: l.Node, State: l.State, Expires: l.Expires})
	if errors.Is(err, etcdstate.ErrInUse) {
		return dhcp.Lease{}, dhcp.ErrSharedInUse
	}
	if errors.Is(err, etcdstate.ErrBusy) {
		return dhcp.Lease{}, fmt.Errorf("%w: %v", dhcp.ErrSharedBusy, err)
	}
	if err != nil {
		return dhcp.Lease{}, err
	}
	return dhcp.Lease{IP: got.IP, MAC: got.MAC, Node: got.Node, State: got.State, Expires: got.Expires}, nil
}

func (e etcdLeases) Release(ctx context.Context, ip netip.Addr, mac string) error {
	return e.c.Release(ctx, ip, mac)
}

func (e etcdLeases) Leases(ctx context.Context) ([]dhcp.Lease, error) {
	ls, err := e.c.Leases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dhcp.Lease, len(ls))
	for i, l := range ls {
		out[i] = dhcp.Lease{IP: l.IP, MAC: l.MAC, Node: l.Node, State: l.State, Expires: l.Expires}
	}
	return out, nil
}

// Fingerprinter is the builder's cheap fingerprint of the trees a snapshot
// uses (artifact.Builder).
type Fingerprinter interface {
	Fingerprint(ctx context.Context, snap *config.Snapshot) string
}

// Run publishes this server's address and fingerprints every publishEvery
// and reads who else is alive, until ctx ends.
func (s *Member) Run(ctx context.Context, store *config.Store, b Fingerprinter) {
	var localFP, treesFP string
	s.loop(ctx, func() etcdstate.ServerInfo {
		snap := store.Current()
		// The builder's fingerprint is cheap (watched trees) but holds inode
		// numbers and ctimes, which differ between copies of a tree; the
		// portable one is recomputed only when the builder's changes.
		if fp := b.Fingerprint(ctx, snap); fp != localFP {
			localFP, treesFP = fp, portableFingerprint(store.Root(), snap)
		}
		return etcdstate.ServerInfo{
			Address:           net.JoinHostPort(snap.Server.Address, strconv.Itoa(snap.Server.Port)),
			ConfigFingerprint: nodesFingerprint(store.Root()),
			ImagesFingerprint: treesFP,
			DHCPPool:          s.dhcpPool(snap.Server),
		}
	})
}

// dhcpPool names the pool whose DISCOVERs this server splits with the
// servers that name the same ("": it answers all of its own).
func (s *Member) dhcpPool(srv *config.Server) string {
	d := srv.DHCP
	if !s.balance || !d.Enabled || d.Mode != config.ModeReservation || d.RangeStart == "" {
		return ""
	}
	return d.RangeStart + "-" + d.RangeEnd
}

// loop is run with what to publish coming from info: every publishEvery,
// every retryEvery while the last try failed; the list of servers is read
// every serversEvery.
func (s *Member) loop(ctx context.Context, info func() etcdstate.ServerInfo) {
	var (
		lease     clientv3.LeaseID
		published time.Time
	)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if lease != 0 {
				if err := s.c.WithdrawServer(lease); err != nil {
					s.log.Warn("etcd: could not withdraw this server; the others see it gone when its lease runs out", "err", err)
				}
			}
			return
		case <-t.C:
		}
		start := time.Now()
		var err error
		if lease == 0 || start.Sub(published) >= publishEvery || s.failing() {
			if lease, err = s.c.PublishServer(ctx, info(), lease); err == nil {
				published = start
			}
		}
		var servers []etcdstate.ServerInfo
		if err == nil {
			servers, err = s.c.Servers(ctx)
		}
		s.mu.Lock()
		if err != nil && s.err == nil {
			s.log.Error("etcd: cannot publish this server; will retry", "err", err)
		}
		if err == nil && s.err != nil {
			s.log.Info("etcd reachable again")
		}
		s.err = err
		if err == nil {
			s.servers = servers
			if d := etcdstate.Disagreement(servers); d != s.disagree {
				if d != "" {
					s.log.Warn("servers disagree", "why", d)
				}
				s.disagree = d
			}
		}
		s.mu.Unlock()
		next := serversEvery
		if err != nil {
			next = retryEvery
		}
		// From the start of this try: a try that timed out does not push
		// the next one further away.
		t.Reset(max(next-time.Since(start), 0))
	}
}

func (s *Member) failing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// Health is /healthz's view: etcd reachable and every server serving the
// same trees.
func (s *Member) Health() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, "etcd unreachable (serving reservations, files and scripts from what this server has; no new pool leases): " + s.err.Error()
	}
	if s.disagree != "" {
		return false, "servers disagree: " + s.disagree
	}
	return true, ""
}

// Servers are the addresses (host:port) of the live servers, this one first.
func (s *Member) Servers(self string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{self}
	var others []string
	for _, sv := range s.servers {
		if sv.Address != self && sv.Address != "" {
			others = append(others, sv.Address)
		}
	}
	sort.Strings(others)
	return append(out, others...)
}

// nodesFingerprint hashes nodes.toml and nodes.d/*.toml: what every server
// of a cluster must agree on (wwserver.toml differs per server).
func nodesFingerprint(root string) string {
	h := sha256.New()
	files := []string{filepath.Join(root, config.NodesFile)}
	more, _ := filepath.Glob(filepath.Join(root, config.NodesDir, "*.toml"))
	sort.Strings(more)
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		h.Write([]byte(filepath.Base(f) + "\x00"))
		if err != nil {
			h.Write([]byte("error\x00"))
			continue
		}
		h.Write(data)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// statusSharer hands every status change this server records to the etcd
// publisher (batched writes).
type statusSharer struct{ pub *etcdstate.StatusPublisher }

func (p statusSharer) Put(node string, r status.Record) {
	p.pub.Put(toStatusRecord(node, r))
}

func toStatusRecord(node string, r status.Record) etcdstate.StatusRecord {
	out := etcdstate.StatusRecord{Node: node, MAC: r.MAC, IP: r.IPAddr, Stage: r.Stage, Sent: r.Sent,
		Time: time.Unix(r.LastSeen, 0).UTC(), LastSeen: time.Unix(r.LastSeen, 0).UTC(), Server: r.Server}
	if r.Heartbeat != nil {
		out.Heartbeat, _ = json.Marshal(r.Heartbeat)
	}
	if r.Progress != nil {
		out.Progress, _ = json.Marshal(r.Progress)
	}
	return out
}

func fromStatusRecord(e etcdstate.StatusRecord) status.Record {
	r := status.Record{MAC: e.MAC, IPAddr: e.IP, Stage: e.Stage, Sent: e.Sent, LastSeen: e.LastSeen.Unix(), Server: e.Server}
	if len(e.Heartbeat) > 0 {
		var hb status.Heartbeat
		if json.Unmarshal(e.Heartbeat, &hb) == nil {
			r.Heartbeat = &hb
		}
	}
	if len(e.Progress) > 0 {
		var p status.Progress
		if json.Unmarshal(e.Progress, &p) == nil {
			r.Progress = &p
		}
	}
	return r
}

// ShareStatus makes st one table with the other servers': every local
// change is published (batched) from now on; the returned function, run
// until ctx ends, merges in what etcd holds and then the others' changes as
// they come.
func (s *Member) ShareStatus(st *status.Store) func(ctx context.Context) error {
	pub := s.c.NewStatusPublisher(statusPublishEvery)
	st.Share(s.c.ID(), statusSharer{pub})
	return func(ctx context.Context) error {
		s.syncStatus(ctx, st, pub)
		return nil
	}
}

func (s *Member) syncStatus(ctx context.Context, st *status.Store, pub *etcdstate.StatusPublisher) {
	var rev int64
	for ctx.Err() == nil {
		recs, r, err := s.c.LoadStatus(ctx)
		if err == nil {
			for _, e := range recs {
				st.Merge(e.Node, fromStatusRecord(e))
			}
			rev = r
			break
		}
		s.log.Warn("etcd: node status not loaded yet; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pub.Run(ctx)
	}()
	self := s.c.ID()
	s.c.WatchStatus(ctx, rev, func(e etcdstate.StatusRecord) {
		if e.Server != self {
			st.Merge(e.Node, fromStatusRecord(e))
		}
	})
	<-done
}

// portableFingerprint hashes what a copy of the tree keeps (rsync -a,
// cp -a): every entry's path, type, mode, size, mtime (seconds) and
// symlink target, of the images and overlays snap's nodes use. Servers
// that serve the same trees publish the same value.
func portableFingerprint(root string, snap *config.Snapshot) string {
	dirs := map[string]bool{}
	for _, n := range snap.Nodes.List {
		dirs[filepath.Join("images", n.Image, "rootfs")] = true
		for _, o := range append(append([]string{}, n.SystemOverlays...), n.RuntimeOverlays...) {
			dirs[filepath.Join("overlays", o)] = true
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, d := range names {
		base := filepath.Join(root, d)
		err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(h, "%s error\x00", p[len(root):])
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d\x00", p[len(root):], fi.Mode(), fi.Size(), fi.ModTime().Unix())
			if fi.Mode()&fs.ModeSymlink != 0 {
				t, _ := os.Readlink(p)
				fmt.Fprintf(h, "%s\x00", t)
			}
			return nil
		})
		if err != nil {
			fmt.Fprintf(h, "%s: %v\x00", d, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
