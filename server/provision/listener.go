package provision

import (
	"container/list"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnLimits bound the HTTP connections wwserver holds.
type ConnLimits struct {
	// Max is the number of connections open at once (one goroutine each).
	Max int
	// PerClient caps the connections of one source address; 0 means Max/4.
	// Negative means no cap.
	PerClient int
	// NewGrace is how long a connection may sit without having sent a whole
	// request before it counts as idle (a slowloris, or a client that
	// connected and went away). Zero means DefaultNewGrace.
	NewGrace time.Duration
}

// DefaultNewGrace: a booting node sends its request within milliseconds of
// connecting.
const DefaultNewGrace = time.Second

// ConnLimiter is a net.Listener that bounds connections without letting idle
// ones lock new clients out, which a plain semaphore does: keep-alive
// connections that sent one request and went quiet would each hold a slot
// for the whole IdleTimeout.
//
// The rule, applied when a new connection needs a slot and none is free:
// close the connection idle the longest (between requests, or connected for
// longer than NewGrace without a complete request), and let the new one in.
// Only when every slot serves a request does the new connection wait (in
// the kernel's listen backlog). A source address at its PerClient cap gets
// its own longest-idle connection closed the same way, or, when all of its
// connections are busy, a 503 and a close.
//
// The http.Server must report connection states: set its ConnState to
// (*ConnLimiter).ConnState. Accepted connections keep *net.TCPConn's
// ReadFrom, so responses still use sendfile(2).
type ConnLimiter struct {
	inner     net.Listener
	max       int
	perClient int
	grace     time.Duration
	log       *slog.Logger
	m         *connMetrics

	mu       sync.Mutex
	open     int                // slots taken, including one being accepted
	byClient map[netip.Addr]int // open connections by source address
	// conns holds every open *trackedConn, those waiting (idle or new)
	// ordered by when they started waiting, longest first. A connection
	// that serves a request stays where it is (moving it would allocate on
	// every request) and is skipped by eviction.
	conns   list.List
	wake    chan struct{} // a slot may have become free
	done    chan struct{}
	closeMu sync.Once
}

// NewConnLimiter wraps l. reg (may be nil) receives the limiter's metrics,
// log its refusals.
func NewConnLimiter(l net.Listener, lim ConnLimits, reg prometheus.Registerer, log *slog.Logger) (*ConnLimiter, error) {
	if lim.Max <= 0 {
		return nil, errors.New("connection limit must be positive")
	}
	switch {
	case lim.PerClient == 0:
		lim.PerClient = max(lim.Max/4, 1)
	case lim.PerClient < 0 || lim.PerClient > lim.Max:
		lim.PerClient = lim.Max
	}
	if lim.NewGrace <= 0 {
		lim.NewGrace = DefaultNewGrace
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newConnMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &ConnLimiter{
		inner: l, max: lim.Max, perClient: lim.PerClient, grace: lim.NewGrace, log: log, m: m,
		byClient: map[netip.Addr]int{}, wake: make(chan struct{}, 1), done: make(chan struct{}),
	}, nil
}

// trackedConn is an accepted connection and its place in the limiter.
type trackedConn struct {
	net.Conn
	l      *ConnLimiter
	client netip.Addr
	// Guarded by l.mu.
	since    time.Time     // when it last started waiting (idle or new)
	elem     *list.Element // in l.conns
	busy     bool          // serving a request (or hijacked)
	released bool          // its slot is given back (closed or evicted)
	isNew    bool          // no complete request yet
	// more: the next Write goes with MSG_MORE (conn.go). Only the
	// goroutine serving the connection touches it.
	more bool
}

// Accept accepts a connection and finds it a slot: a free one, or the
// longest-idle connection's (closed for it); when every slot serves a
// request it waits for one. A client at its cap gets its own longest-idle
// connection closed instead, or a 503 when all of its connections are busy.
// Accepting first means only a client that is really there costs an idle
// connection, and at most one connection waits outside the limit.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		tc, err := l.place(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		if tc != nil {
			return tc, nil
		}
	}
}

// place books c, evicting as the rules say; nil (and no error) when c was
// refused and closed.
func (l *ConnLimiter) place(c net.Conn) (*trackedConn, error) {
	client := netip.Addr{}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		client = ap.Addr().Unmap()
	}
	for {
		l.mu.Lock()
		var victim *trackedConn
		var retry time.Duration
		cause := "per_client"
		if l.byClient[client] >= l.perClient {
			victim, _ = l.evictLocked(func(o *trackedConn) bool { return o.client == client })
			if victim == nil {
				l.mu.Unlock()
				l.m.refused.Inc()
				l.log.Debug("connection refused: client at its cap of busy connections", "client", client, "cap", l.perClient)
				refuseBusy(c)
				return nil, nil
			}
		} else if l.open >= l.max {
			cause = "limit"
			victim, retry = l.evictLocked(func(*trackedConn) bool { return true })
		}
		if l.open >= l.max {
			// Every connection is serving a request (or is new, within
			// its grace): wait as the listen backlog would.
			l.mu.Unlock()
			if err := l.waitForSlot(retry); err != nil {
				return nil, err
			}
			continue
		}
		tc := &trackedConn{Conn: c, l: l, client: client, since: time.Now(), isNew: true}
		l.open++
		l.byClient[client]++
		tc.elem = l.conns.PushBack(tc)
		l.mu.Unlock()
		l.m.open.Inc()
		if victim != nil {
			victim.Conn.Close()
			l.m.evicted.WithLabelValues(cause).Inc()
			l.log.Debug("closed the longest-idle connection for a new one", "cause", cause, "idle_client", victim.client, "new_client", client)
		}
		return tc, nil
	}
}

// waitForSlot waits until a slot may be free, or for retry (when positive:
// a new connection's grace ends then).
func (l *ConnLimiter) waitForSlot(retry time.Duration) error {
	var timer <-chan time.Time
	if retry > 0 {
		t := time.NewTimer(retry)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-l.wake:
	case <-timer:
	case <-l.done:
		return net.ErrClosed
	}
	return nil
}

// evictLocked takes the longest-waiting connection that match accepts out
// of the books (its slot is free when this returns) and returns it for the
// caller to close outside the lock. When only new connections within their
// grace match, it returns nil and how long until the first one's grace ends
// (0: nothing to wait for).
func (l *ConnLimiter) evictLocked(match func(*trackedConn) bool) (victim *trackedConn, retry time.Duration) {
	now := time.Now()
	for e := l.conns.Front(); e != nil; e = e.Next() {
		c := e.Value.(*trackedConn)
		if c.busy || !match(c) {
			continue
		}
		if c.isNew {
			if left := c.since.Add(l.grace).Sub(now); left > 0 {
				if retry == 0 || left < retry {
					retry = left
				}
				continue
			}
			// Its request waits unread: the server is behind (a storm
			// on busy cores), not the client. Closing it would reset a
			// node that did nothing wrong; it counts as busy.
			if hasUnread(c.Conn) {
				continue
			}
		}
		l.releaseLocked(c)
		return c, 0
	}
	return nil, retry
}

// refuseBusy answers a connection over its client's cap with 503 and closes
// it. The write goes to an empty socket buffer, so it does not block; the
// deadline is a backstop.
func refuseBusy(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 46\r\n\r\ntoo many connections from this client address\n")
	_ = c.Close()
}

// releaseLocked gives a connection's slot back, once.
func (l *ConnLimiter) releaseLocked(c *trackedConn) {
	if c.released {
		return
	}
	c.released = true
	if c.elem != nil {
		l.conns.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	if n := l.byClient[c.client] - 1; n > 0 {
		l.byClient[c.client] = n
	} else {
		delete(l.byClient, c.client)
	}
	l.m.open.Dec()
	l.signalLocked()
}

func (l *ConnLimiter) signalLocked() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// ConnState is the http.Server ConnState hook: it keeps the order in which
// connections went idle.
func (l *ConnLimiter) ConnState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*trackedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return
	}
	switch state {
	case http.StateActive:
		c.isNew, c.busy = false, true
	case http.StateIdle:
		c.isNew, c.busy = false, false
		c.since = time.Now()
		l.conns.MoveToBack(c.elem)
		l.signalLocked() // an acceptor waiting at the limit may evict it
	case http.StateClosed:
		l.releaseLocked(c)
	case http.StateHijacked:
		// The hijacker owns it now; its slot is given back on Close.
		c.busy = true
	}
}

// Close stops accepting; open connections are the http.Server's to close.
func (l *ConnLimiter) Close() error {
	l.closeMu.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr is the listening address.
func (l *ConnLimiter) Addr() net.Addr { return l.inner.Addr() }

// Open is the number of connections held now.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return err
}

// ReadFrom keeps sendfile(2): net/http hands a file response to the
// connection's ReadFrom, which *net.TCPConn implements with sendfile.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite lets net/http half-close after an error response, as it does
// for a plain *net.TCPConn.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

type connMetrics struct {
	open    prometheus.Gauge
	evicted *prometheus.CounterVec
	refused prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "open_connections",
			Help: "HTTP connections held (serving or idle).",
		}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "connections_evicted_total",
			Help: "Idle HTTP connections closed to make room, by cause (limit: --max-connections; per_client: one address's cap).",
		}, []string{"cause"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "connections_refused_total",
			Help: "HTTP connections answered 503 because their client had its cap of busy connections.",
		}),
	}
	m.evicted.WithLabelValues("limit")
	m.evicted.WithLabelValues("per_client")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.open, m.evicted, m.refused} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
