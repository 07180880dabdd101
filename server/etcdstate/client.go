// Package etcdstate keeps the state that several wwservers share in etcd:
// DHCP pool leases (taken with compare-and-swap transactions, so two servers
// can never hand one address to two MACs), node status (batched writes,
// watched by every server) and each server's fingerprint of what it serves.
//
// Key layout under Options.Prefix (default "/wwserver/"):
//
//	leases/ip/<ip>      JSON Lease        the address's holder
//	leases/mac/<mac>    "<ip>"            the MAC's current address
//	status/<node>       JSON StatusRecord
//	servers/<id>        JSON ServerInfo   (kept alive with an etcd lease)
//
// Leases and server entries carry etcd leases, so etcd itself expires them.
package etcdstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ErrUnavailable wraps every error that means "etcd did not answer in time".
var ErrUnavailable = errors.New("etcd unavailable")

// Options say where etcd is and how to talk to it.
type Options struct {
	Endpoints []string
	CAFile    string // TLS: all three or none
	CertFile  string
	KeyFile   string
	Prefix    string        // key prefix, default "/wwserver/"
	Timeout   time.Duration // per request, default 2 s
	ServerID  string        // this server's name in status and servers/ (default: host name)
	Log       *slog.Logger
	// LeaseBatch is the most lease claims written in one transaction
	// (batch.go; default 64, at most MaxLeaseBatch); 1 writes each claim
	// in its own transactions, read then write, as before batching.
	LeaseBatch int
	// Registerer receives the lease writer's metrics; nil: none.
	Registerer prometheus.Registerer
}

// DefaultLeaseBatch is Options.LeaseBatch's default.
const DefaultLeaseBatch = 64

// Client is one server's connection to the shared state.
type Client struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	id      string
	log     *slog.Logger

	grantMu sync.Mutex
	grants  map[int64]clientv3.LeaseID // expiry bucket (unix s) → etcd lease

	batch     *batcher // nil: LeaseBatch 1
	stopBatch context.CancelFunc
	batchDone chan struct{}
}

// Connect dials etcd. It does not wait for etcd to answer: a server starts
// and serves what it can while etcd is down (see Healthy).
func Connect(o Options) (*Client, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = "/wwserver/"
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var tlsCfg *tls.Config
	if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
		info := transport.TLSInfo{TrustedCAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
		tlsCfg = c
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            o.Endpoints,
		DialTimeout:          o.Timeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  tlsCfg,
		Logger:               zap.NewNop(), // errors reach our slog log through return values
		DialOptions:          []grpc.DialOption{grpc.WithConnectParams(reconnect)},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	c := &Client{cli: cli, prefix: o.Prefix, timeout: o.Timeout, id: o.ServerID, log: o.Log,
		grants: map[int64]clientv3.LeaseID{}}
	if o.LeaseBatch == 0 {
		o.LeaseBatch = DefaultLeaseBatch
	}
	if o.LeaseBatch > 1 {
		m, err := newBatchMetrics(o.Registerer)
		if err != nil {
			cli.Close()
			return nil, fmt.Errorf("etcd lease writer metrics: %w", err)
		}
		c.batch = newBatcher(c, o.LeaseBatch, m)
		ctx, cancel := context.WithCancel(context.Background())
		c.stopBatch, c.batchDone = cancel, make(chan struct{})
		go func() {
			defer close(c.batchDone)
			c.batch.run(ctx)
		}()
	}
	return c, nil
}

// reconnect is how the client dials etcd again after losing it. gRPC's
// default backoff grows to 2 minutes (1 s × 1.6 per failure), so after
// etcd was down for a while the client could wait many seconds after etcd
// was back before trying; capped at 1 s, requests (and /healthz) recover
// within about a second. Dialling a few endpoints once a second is cheap.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// Close stops the lease writer (queued claims fail) and ends the connection.
func (c *Client) Close() error {
	if c.batch != nil {
		c.stopBatch()
		<-c.batchDone
	}
	return c.cli.Close()
}

// ID is this server's name.
func (c *Client) ID() string { return c.id }

// Healthy asks etcd for one key within the timeout.
func (c *Client) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.cli.Get(ctx, c.prefix+"health", clientv3.WithCountOnly())
	return c.wrap("health", err)
}

// wrap marks errors that mean "no answer" with ErrUnavailable.
func (c *Client) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		strings.Contains(err.Error(), "Unavailable") || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("etcd %s: %w: %v", op, ErrUnavailable, err)
	}
	return fmt.Errorf("etcd %s: %w", op, err)
}

// grant returns an etcd lease that lives until at least expires: leases are
// shared per 30-second bucket, so a storm of DORAs costs a handful of grants.
func (c *Client) grant(ctx context.Context, expires time.Time) (clientv3.LeaseID, error) {
	const bucket = 30
	end := (expires.Unix()/bucket + 1) * bucket
	c.grantMu.Lock()
	defer c.grantMu.Unlock()
	if id, ok := c.grants[end]; ok {
		return id, nil
	}
	ttl := end - time.Now().Unix() + 5
	if ttl < 10 {
		ttl = 10
	}
	resp, err := c.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, c.wrap("grant", err)
	}
	now := time.Now().Unix()
	for k := range c.grants { // forget buckets that have passed
		if k < now {
			delete(c.grants, k)
		}
	}
	c.grants[end] = resp.ID
	return resp.ID, nil
}
