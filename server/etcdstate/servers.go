package etcdstate

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ServerInfo is what each server publishes about itself, so that any server
// can say when the servers disagree about what they serve.
type ServerInfo struct {
	ID                string `json:"id"`
	Address           string `json:"address"` // host:port nodes use
	ConfigFingerprint string `json:"config_fingerprint"`
	ImagesFingerprint string `json:"images_fingerprint"`
	// DHCPPool is the DHCP pool whose DISCOVERs this server shares by hash
	// bucket with the servers publishing the same ("": none).
	DHCPPool string    `json:"dhcp_pool,omitempty"`
	Updated  time.Time `json:"updated"`
}

// ServerTTL: a server that stops renewing (it crashed, or lost etcd)
// disappears from servers/ after this; one that stops cleanly withdraws at
// once (WithdrawServer). The others deal its DHCP buckets out again then;
// until that, its clients are taken over after one retransmission.
const ServerTTL = 10 * time.Second

// PublishServer writes info under servers/<id> attached to an etcd lease
// kept alive until ctx ends; call it again whenever a fingerprint changes.
// It returns the keep-alive lease so the caller can reuse it.
func (c *Client) PublishServer(ctx context.Context, info ServerInfo, lease clientv3.LeaseID) (clientv3.LeaseID, error) {
	if info.ID == "" {
		info.ID = c.id
	}
	info.Updated = time.Now().UTC()
	b, err := json.Marshal(&info)
	if err != nil {
		return lease, fmt.Errorf("encode server info: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if lease == 0 {
		g, err := c.cli.Grant(cctx, int64(ServerTTL/time.Second))
		if err != nil {
			return 0, c.wrap("grant", err)
		}
		lease = g.ID
		ka, err := c.cli.KeepAlive(ctx, lease)
		if err != nil {
			return 0, c.wrap("keepalive", err)
		}
		go func() { // drain; the channel closes when ctx ends or the lease is lost
			for range ka {
			}
		}()
	}
	if _, err := c.cli.Put(cctx, c.prefix+"servers/"+info.ID, string(b), clientv3.WithLease(lease)); err != nil {
		return 0, c.wrap("publish server", err) // lease may be gone: start over next time
	}
	return lease, nil
}

// WithdrawServer removes this server's registration now (a clean stop), so
// the others stop leaving its share of DISCOVERs to it at their next read
// instead of when the lease runs out. It does not use the caller's context,
// which has usually ended by then.
func (c *Client) WithdrawServer(lease clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	_, err := c.cli.Revoke(ctx, lease)
	return c.wrap("withdraw server", err)
}

// Servers lists the servers that are alive, by ID.
func (c *Client) Servers(ctx context.Context) ([]ServerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.cli.Get(ctx, c.prefix+"servers/", clientv3.WithPrefix())
	if err != nil {
		return nil, c.wrap("servers", err)
	}
	var out []ServerInfo
	for _, kv := range r.Kvs {
		var s ServerInfo
		if json.Unmarshal(kv.Value, &s) == nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Disagreement describes servers whose fingerprints differ from the first
// (by ID); empty when all agree.
func Disagreement(servers []ServerInfo) string {
	if len(servers) < 2 {
		return ""
	}
	ref := servers[0]
	var msg string
	for _, s := range servers[1:] {
		if s.ConfigFingerprint != ref.ConfigFingerprint {
			msg += fmt.Sprintf("%s and %s serve different configs; ", ref.ID, s.ID)
		}
		if s.ImagesFingerprint != ref.ImagesFingerprint {
			msg += fmt.Sprintf("%s and %s serve different images/overlays; ", ref.ID, s.ID)
		}
	}
	if msg != "" {
		msg = msg[:len(msg)-2]
	}
	return msg
}
