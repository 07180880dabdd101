package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// portPool dials from local ports in [lo, hi] (wwserver's secure mode serves
// the runtime overlay only to source ports < 1024, which only root can bind).
// Ports are handed out round robin, skipping those held by open connections;
// a port the kernel refuses (in use by another socket, or a 4-tuple still in
// TIME_WAIT) is skipped. Connections are closed with SO_LINGER 0 (RST), so
// they leave no TIME_WAIT behind and the ports can be reused by the next run.
type portPool struct {
	mu     sync.Mutex
	lo, hi int
	next   int
	inUse  map[int]bool
	dialer net.Dialer
}

func newPortPool(lo, hi int) *portPool {
	return &portPool{
		lo: lo, hi: hi, next: lo, inUse: map[int]bool{},
		dialer: net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				})
				if err != nil {
					return err
				}
				return serr
			},
		},
	}
}

// take reserves the next free port, 0 when all are held.
func (p *portPool) take() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.hi - p.lo + 1 {
		port := p.next
		p.next++
		if p.next > p.hi {
			p.next = p.lo
		}
		if !p.inUse[port] {
			p.inUse[port] = true
			return port
		}
	}
	return 0
}

func (p *portPool) release(port int) {
	p.mu.Lock()
	delete(p.inUse, port)
	p.mu.Unlock()
}

func (p *portPool) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var lastErr error
	for range p.hi - p.lo + 1 {
		port := p.take()
		if port == 0 {
			break
		}
		d := p.dialer
		d.LocalAddr = &net.TCPAddr{Port: port}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			return &pooledConn{Conn: c, pool: p, port: port}, nil
		}
		p.release(port)
		lastErr = err
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			continue // try the next port
		}
		return nil, err
	}
	if lastErr == nil {
		lastErr = errors.New("all ports in use")
	}
	return nil, fmt.Errorf("no usable local port in %d-%d: %w", p.lo, p.hi, lastErr)
}

// pooledConn gives its port back when closed.
type pooledConn struct {
	net.Conn
	pool *portPool
	port int
	once sync.Once
}

func (c *pooledConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.pool.release(c.port) })
	return err
}
