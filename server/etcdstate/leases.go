package etcdstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInUse: another MAC holds the address (or it is declined) and its lease
// has not expired.
var ErrInUse = errors.New("address held by another client")

// errConflict: another server changed one of the keys between our read and
// our write; Claim retries.
var errConflict = errors.New("concurrent change")

// Lease states (the same words as the DHCP server's).
const (
	StateOffered = "offered" // held between OFFER and REQUEST
	StateBound   = "bound"   // ACKed
)

// Lease is one pool address held for a MAC. MAC is empty for a declined
// (quarantined) address.
type Lease struct {
	IP      netip.Addr `json:"ip"`
	MAC     string     `json:"mac,omitempty"`
	Node    string     `json:"node,omitempty"`
	State   string     `json:"state"`
	Expires time.Time  `json:"expires"`
	Server  string     `json:"server,omitempty"` // which wwserver took it
}

func (c *Client) ipKey(ip netip.Addr) string { return c.prefix + "leases/ip/" + ip.String() }
func (c *Client) macKey(mac string) string   { return c.prefix + "leases/mac/" + mac }

// Claim takes an address for l.MAC until l.Expires and returns the lease
// it holds. A MAC keeps one address: when it already holds an unexpired
// one, that one is renewed and returned instead of l.IP (so two servers
// answering the same DISCOVER offer the same address). It fails with
// ErrInUse when another MAC holds the address, and with ErrUnavailable
// when etcd does not answer: the caller must then not hand out anything.
//
// A claim by the holder itself never downgrades a bound lease to an offer
// nor shortens its expiry (see renewal): the returned lease is what etcd
// then holds.
func (c *Client) Claim(ctx context.Context, l Lease) (Lease, error) {
	if !l.IP.IsValid() {
		return Lease{}, fmt.Errorf("claim: invalid address")
	}
	if l.Server == "" {
		l.Server = c.id
	}
	if c.batch != nil {
		return c.batch.claim(ctx, l) // bounded by the batch's timeouts
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for try := 0; try < 8; try++ {
		got, err := c.claimOnce(ctx, l)
		if !errors.Is(err, errConflict) {
			return got, err
		}
	}
	return Lease{}, fmt.Errorf("claim %s for %s: %w (gave up after retries)", l.IP, l.MAC, errConflict)
}

func (c *Client) claimOnce(ctx context.Context, l Lease) (Lease, error) {
	now := time.Now()
	var conds []clientv3.Cmp
	if l.MAC != "" {
		macKey := c.macKey(l.MAC)
		r, err := c.cli.Get(ctx, macKey)
		if err != nil {
			return Lease{}, c.wrap("claim read", err)
		}
		macKV := firstKV(r.Kvs)
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(macKey), "=", modRev(macKV)))
		if macKV != nil {
			// Renew what the MAC holds, unless that is stale (expired, or
			// taken over by another MAC since).
			if held, err := netip.ParseAddr(string(macKV.Value)); err == nil && held != l.IP {
				r, err := c.cli.Get(ctx, c.ipKey(held))
				if err != nil {
					return Lease{}, c.wrap("claim read", err)
				}
				var h Lease
				if kv := firstKV(r.Kvs); kv != nil && json.Unmarshal(kv.Value, &h) == nil &&
					h.MAC == l.MAC && now.Before(h.Expires) {
					l.IP = held
				}
			}
		}
	}
	ipKey := c.ipKey(l.IP)
	r, err := c.cli.Get(ctx, ipKey)
	if err != nil {
		return Lease{}, c.wrap("claim read", err)
	}
	ipKV := firstKV(r.Kvs)
	if ipKV != nil {
		var holder Lease
		if err := json.Unmarshal(ipKV.Value, &holder); err == nil && now.Before(holder.Expires) {
			if holder.MAC != l.MAC {
				return Lease{}, fmt.Errorf("claim %s for %s: %w (%s, %s)", l.IP, l.MAC, ErrInUse, holder.MAC, holder.State)
			}
			l = renewal(holder, l)
		}
	}
	conds = append(conds, clientv3.Compare(clientv3.ModRevision(ipKey), "=", modRev(ipKV)))
	val, err := json.Marshal(&l)
	if err != nil {
		return Lease{}, fmt.Errorf("encode lease: %w", err)
	}
	id, err := c.grant(ctx, l.Expires)
	if err != nil {
		return Lease{}, err
	}
	writes := []clientv3.Op{clientv3.OpPut(ipKey, string(val), clientv3.WithLease(id))}
	if l.MAC != "" {
		writes = append(writes, clientv3.OpPut(c.macKey(l.MAC), l.IP.String(), clientv3.WithLease(id)))
	}
	resp, err := c.cli.Txn(ctx).If(conds...).Then(writes...).Commit()
	if err != nil {
		return Lease{}, c.wrap("claim", err)
	}
	if !resp.Succeeded {
		return Lease{}, errConflict
	}
	return l, nil
}

// renewal is what a claim l by the current holder of an address writes:
// an offer may become bound and a lease may be extended, but a bound lease
// stays bound (with the server and node that bound it) and no expiry is
// shortened. Two servers answer every DISCOVER; the offer of the one the
// client did not choose can reach etcd after the other's ACK, and it must
// not turn the binding into a one-minute offer whose address etcd then
// frees while the client still holds it.
func renewal(holder, l Lease) Lease {
	if holder.State == StateBound && l.State == StateOffered {
		l.State, l.Server = holder.State, holder.Server
		if holder.Node != "" {
			l.Node = holder.Node
		}
	}
	if holder.Expires.After(l.Expires) {
		l.Expires = holder.Expires
	}
	if l.Node == "" {
		l.Node = holder.Node
	}
	return l
}

// Release frees ip if mac holds it (DHCPRELEASE).
func (c *Client) Release(ctx context.Context, ip netip.Addr, mac string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ipKey, macKey := c.ipKey(ip), c.macKey(mac)
	if c.batch != nil {
		defer c.batch.forget(ipKey, macKey) // changed behind the lease writer
	}
	for try := 0; try < 8; try++ {
		r, err := c.cli.Get(ctx, ipKey)
		if err != nil {
			return c.wrap("release read", err)
		}
		kv := firstKV(r.Kvs)
		if kv == nil {
			return nil
		}
		var h Lease
		if json.Unmarshal(kv.Value, &h) != nil || h.MAC != mac {
			return nil // not ours to free
		}
		// The MAC key goes only if it still points here (nested transaction).
		dropMAC := clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value(macKey), "=", ip.String())},
			[]clientv3.Op{clientv3.OpDelete(macKey)}, nil)
		resp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(ipKey), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(ipKey), dropMAC).Commit()
		if err != nil {
			return c.wrap("release", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return errConflict
}

// Leases returns every unexpired lease.
func (c *Client) Leases(ctx context.Context) ([]Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.cli.Get(ctx, c.prefix+"leases/ip/", clientv3.WithPrefix())
	if err != nil {
		return nil, c.wrap("leases", err)
	}
	now := time.Now()
	out := make([]Lease, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		var l Lease
		if json.Unmarshal(kv.Value, &l) != nil || !now.Before(l.Expires) {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// LeaseOf returns the address mac holds, if any.
func (c *Client) LeaseOf(ctx context.Context, mac string) (Lease, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.cli.Get(ctx, c.macKey(mac))
	if err != nil {
		return Lease{}, false, c.wrap("lease of", err)
	}
	kv := firstKV(r.Kvs)
	if kv == nil {
		return Lease{}, false, nil
	}
	ip, err := netip.ParseAddr(string(kv.Value))
	if err != nil {
		return Lease{}, false, nil
	}
	r, err = c.cli.Get(ctx, c.ipKey(ip))
	if err != nil {
		return Lease{}, false, c.wrap("lease of", err)
	}
	kv = firstKV(r.Kvs)
	if kv == nil {
		return Lease{}, false, nil
	}
	var l Lease
	if json.Unmarshal(kv.Value, &l) != nil || l.MAC != mac || !time.Now().Before(l.Expires) {
		return Lease{}, false, nil
	}
	return l, true, nil
}

func firstKV(kvs []*mvccpb.KeyValue) *mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}

func modRev(kv *mvccpb.KeyValue) int64 {
	if kv == nil {
		return 0
	}
	return kv.ModRevision
}
