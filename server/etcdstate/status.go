package etcdstate

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// StatusRecord is one node's status as every server sees it.
type StatusRecord struct {
	Node     string    `json:"node"`
	MAC      string    `json:"mac,omitempty"`
	IP       string    `json:"ip,omitempty"`
	Stage    string    `json:"stage,omitempty"`
	Sent     string    `json:"sent,omitempty"`
	Time     time.Time `json:"time"`      // when Stage was reached
	LastSeen time.Time `json:"last_seen"` // last request or heartbeat
	Server   string    `json:"server,omitempty"`
	// Heartbeat is the node's last heartbeat body, as the server keeps it.
	Heartbeat json.RawMessage `json:"heartbeat,omitempty"`
	// Progress is the node's last download report (two-stage boot).
	Progress json.RawMessage `json:"progress,omitempty"`
}

// Newer reports whether r carries news over old (a later stage or a later
// sighting).
func (r StatusRecord) Newer(old StatusRecord) bool {
	return r.Time.After(old.Time) || r.LastSeen.After(old.LastSeen)
}

func (c *Client) statusKey(node string) string { return c.prefix + "status/" + node }

// maxTxnOps stays under etcd's default --max-txn-ops (128).
const maxTxnOps = 100

// StatusPublisher batches status writes: Put only updates a map (latest
// record per node), Run writes what changed every interval in transactions
// of up to 100 puts. A 1,000-node storm is ~10 round trips per interval,
// not one per request. While etcd is down the map keeps the latest record
// per node (bounded by the number of nodes) and is written when it returns.
type StatusPublisher struct {
	c        *Client
	interval time.Duration

	mu      sync.Mutex
	pending map[string]StatusRecord
	kick    chan struct{}
	lastErr error
}

// NewStatusPublisher writes at most once per interval (default 500 ms).
func (c *Client) NewStatusPublisher(interval time.Duration) *StatusPublisher {
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	return &StatusPublisher{c: c, interval: interval, pending: map[string]StatusRecord{}, kick: make(chan struct{}, 1)}
}

// Put queues r (never blocks on etcd).
func (p *StatusPublisher) Put(r StatusRecord) {
	if r.Server == "" {
		r.Server = p.c.id
	}
	p.mu.Lock()
	if old, ok := p.pending[r.Node]; !ok || !old.Newer(r) {
		p.pending[r.Node] = r
	}
	p.mu.Unlock()
}

// Pending is the number of nodes whose record is not yet in etcd.
func (p *StatusPublisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Err is the last flush error (nil after a successful flush).
func (p *StatusPublisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Flush writes everything pending now.
func (p *StatusPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	batch := p.pending
	p.pending = make(map[string]StatusRecord, len(batch))
	p.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ops := make([]clientv3.Op, 0, maxTxnOps)
	var failed []StatusRecord
	var firstErr error
	send := func(recs []StatusRecord) {
		cctx, cancel := context.WithTimeout(ctx, p.c.timeout)
		defer cancel()
		if _, err := p.c.cli.Txn(cctx).Then(ops...).Commit(); err != nil {
			failed = append(failed, recs...)
			if firstErr == nil {
				firstErr = p.c.wrap("status write", err)
			}
		}
		ops = ops[:0]
	}
	recs := make([]StatusRecord, 0, maxTxnOps)
	for _, r := range batch {
		b, err := json.Marshal(&r)
		if err != nil {
			continue
		}
		ops = append(ops, clientv3.OpPut(p.c.statusKey(r.Node), string(b)))
		recs = append(recs, r)
		if len(ops) == maxTxnOps {
			send(recs)
			recs = recs[:0]
		}
	}
	if len(ops) > 0 {
		send(recs)
	}
	p.mu.Lock()
	for _, r := range failed { // keep for the next try unless something newer came
		if old, ok := p.pending[r.Node]; !ok || r.Newer(old) {
			p.pending[r.Node] = r
		}
	}
	p.lastErr = firstErr
	p.mu.Unlock()
	return firstErr
}

// Run flushes every interval until ctx ends, then once more (bounded by the
// client timeout).
func (p *StatusPublisher) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return p.Flush(context.WithoutCancel(ctx))
		case <-t.C:
			if err := p.Flush(ctx); err != nil {
				p.c.log.Warn("node status not written to etcd; will retry", "err", err, "pending", p.Pending())
			}
		}
	}
}

// LoadStatus reads every node's record and the revision to watch from.
func (c *Client) LoadStatus(ctx context.Context) ([]StatusRecord, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.cli.Get(ctx, c.prefix+"status/", clientv3.WithPrefix())
	if err != nil {
		return nil, 0, c.wrap("load status", err)
	}
	out := make([]StatusRecord, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		var s StatusRecord
		if json.Unmarshal(kv.Value, &s) == nil && s.Node != "" {
			out = append(out, s)
		}
	}
	return out, r.Header.Revision, nil
}

// DeleteStatus removes nodes' records (an explicit admin prune).
func (c *Client) DeleteStatus(ctx context.Context, nodes ...string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for len(nodes) > 0 {
		n := min(len(nodes), maxTxnOps)
		ops := make([]clientv3.Op, 0, n)
		for _, node := range nodes[:n] {
			ops = append(ops, clientv3.OpDelete(c.statusKey(node)))
		}
		if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return c.wrap("delete status", err)
		}
		nodes = nodes[n:]
	}
	return nil
}

// WatchStatus calls fn for every record written after revision rev (by any
// server, this one included) until ctx ends. When the watch breaks (etcd
// down, compaction) it reloads everything and resumes, so a server catches
// up after an outage.
func (c *Client) WatchStatus(ctx context.Context, rev int64, fn func(StatusRecord)) {
	prefix := c.prefix + "status/"
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				break // reload below
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				var s StatusRecord
				if json.Unmarshal(ev.Kv.Value, &s) == nil && s.Node != "" &&
					strings.TrimPrefix(string(ev.Kv.Key), prefix) == s.Node {
					fn(s)
				}
			}
			rev = resp.Header.Revision
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		// Catch up: reload everything (compaction may have dropped the
		// revisions in between), then watch again from there.
		for ctx.Err() == nil {
			recs, r, err := c.LoadStatus(ctx)
			if err == nil {
				for _, s := range recs {
					fn(s)
				}
				rev = r
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// String for logs.
func (r StatusRecord) String() string {
	return fmt.Sprintf("%s %s %s @%s", r.Node, r.Stage, r.Sent, r.Server)
}
