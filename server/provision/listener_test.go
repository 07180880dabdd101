package provision

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// limitedServer runs NewHTTPServer(h) behind a ConnLimiter on a loopback
// port until the test ends; onState (may be nil) sees each state change
// after the limiter did.
func limitedServer(t *testing.T, lim ConnLimits, h http.Handler, onState func(net.Conn, http.ConnState)) (*ConnLimiter, string, *prometheus.Registry) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l, err := NewConnLimiter(inner, lim, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(h, nil)
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		l.ConnState(c, st)
		if onState != nil {
			onState(c, st)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l, inner.Addr().String(), reg
}

// dialFrom connects from loopback address src.
func dialFrom(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends GET path on c and returns the response (body read).
func ask(t *testing.T, c net.Conn, br *bufio.Reader, path string) (*http.Response, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, c.LocalAddr(), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// idle opens a keep-alive connection from src that asked once.
func idle(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	c := dialFrom(t, addr, src)
	if resp, body := ask(t, c, bufio.NewReader(c), "/ok"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%s %q", resp.Status, body)
	}
	return c
}

// closed reports whether the server closed c (EOF within 5 s).
func closed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset by peer") }

// stillOpen reports whether c stays open (a short read times out).
func stillOpen(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return os.IsTimeout(err)
}

// okOrBlock answers /ok at once and /block when unblock is closed, telling
// entered first.
func okOrBlock(entered chan<- struct{}, unblock <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-unblock
		}
		io.WriteString(w, "ok")
	})
}

func TestConnLimiterIdleMakeRoom(t *testing.T) {
	const limit = 64
	idled := make(chan string, 4*limit) // client addresses, in the order they went idle
	l, addr, reg := limitedServer(t, ConnLimits{Max: limit, PerClient: -1}, okOrBlock(nil, nil), func(c net.Conn, st http.ConnState) {
		if st == http.StateIdle {
			idled <- c.RemoteAddr().String()
		}
	})
	byAddr := map[string]net.Conn{}
	for range limit {
		c := idle(t, addr, "127.0.0.2")
		byAddr[c.LocalAddr().String()] = c
	}
	// A response reaches the client just before the server marks its
	// connection idle, so the idle order is the server's to tell.
	var order []net.Conn
	for range limit {
		order = append(order, byAddr[<-idled])
	}
	if l.Open() != limit {
		t.Fatalf("%d open, want %d", l.Open(), limit)
	}
	// Two new clients: the two longest-idle connections go, in order.
	for i := range 2 {
		c := dialFrom(t, addr, "127.0.0.3")
		if resp, body := ask(t, c, bufio.NewReader(c), "/ok"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("new client %d: %s %q", i, resp.Status, body)
		}
		if !closed(order[i]) {
			t.Fatalf("idle connection %d was not the one closed", i)
		}
		<-idled // the new client's own connection
	}
	if !stillOpen(order[2]) {
		t.Error("more idle connections closed than new clients came")
	}
	if got := counterValue(t, reg, "wwserver_http_connections_evicted_total", "cause", "limit"); got != 2 {
		t.Errorf("evicted metric %v, want 2", got)
	}
	if l.Open() != limit {
		t.Errorf("%d open, want %d", l.Open(), limit)
	}
}

func TestConnLimiterWaitsWhenAllBusy(t *testing.T) {
	entered, unblock := make(chan struct{}), make(chan struct{})
	l, addr, _ := limitedServer(t, ConnLimits{Max: 2, PerClient: -1}, okOrBlock(entered, unblock), nil)
	busy := make([]net.Conn, 2)
	for i := range busy {
		busy[i] = dialFrom(t, addr, "127.0.0.2")
		if _, err := io.WriteString(busy[i], "GET /block HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		<-entered
	}
	// The third connection waits: nothing to close, both serve a request.
	third := dialFrom(t, addr, "127.0.0.3")
	got := make(chan string, 1)
	go func() {
		_ = third.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(third, "GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(third), nil)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	select {
	case s := <-got:
		t.Fatalf("a third connection was served while two requests hold the limit of 2: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
	if l.Open() != 2 {
		t.Errorf("%d open, want 2", l.Open())
	}
	close(unblock) // both finish and go idle: the third gets a slot
	if s := <-got; s != "ok" {
		t.Fatalf("third connection: %q", s)
	}
}

func TestConnLimiterPerClientCap(t *testing.T) {
	entered, unblock := make(chan struct{}), make(chan struct{})
	idled := make(chan string, 16) // client addresses, in the order they went idle
	_, addr, reg := limitedServer(t, ConnLimits{Max: 16, PerClient: 2}, okOrBlock(entered, unblock), func(c net.Conn, st http.ConnState) {
		if st == http.StateIdle {
			idled <- c.RemoteAddr().String()
		}
	})
	// Client .2 holds its cap with busy requests.
	var busy []net.Conn
	for range 2 {
		c := dialFrom(t, addr, "127.0.0.2")
		io.WriteString(c, "GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
		<-entered
		busy = append(busy, c)
	}
	c := dialFrom(t, addr, "127.0.0.2")
	resp, body := ask(t, c, bufio.NewReader(c), "/ok")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "too many connections") {
		t.Fatalf("third connection of a client at its cap: %s %q", resp.Status, body)
	}
	if counterValue(t, reg, "wwserver_http_connections_refused_total", "", "") != 1 {
		t.Errorf("refused metric %v", counterValue(t, reg, "wwserver_http_connections_refused_total", "", ""))
	}
	// Another client is not affected.
	other := idle(t, addr, "127.0.0.3")
	<-idled

	// Once .2's requests are done its connections idle: a new one from .2
	// closes .2's longest-idle connection, not another client's.
	close(unblock)
	for _, b := range busy {
		resp, err := http.ReadResponse(bufio.NewReader(b), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	// The response is out before the server marks the connection idle.
	first, second := <-idled, <-idled
	if busy[0].LocalAddr().String() != first {
		busy[0], busy[1] = busy[1], busy[0]
	}
	if busy[0].LocalAddr().String() != first || busy[1].LocalAddr().String() != second {
		t.Fatalf("idle marks %s %s are not the busy connections", first, second)
	}
	c = dialFrom(t, addr, "127.0.0.2")
	if resp, body := ask(t, c, bufio.NewReader(c), "/ok"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("new connection of a client with idle ones: %s %q", resp.Status, body)
	}
	if !closed(busy[0]) {
		t.Error("the client's longest-idle connection was not closed")
	}
	if !stillOpen(busy[1]) {
		t.Error("the client's other idle connection was closed too")
	}
	if !stillOpen(other) {
		t.Error("another client's connection was closed")
	}
	if got := counterValue(t, reg, "wwserver_http_connections_evicted_total", "cause", "per_client"); got != 1 {
		t.Errorf("per_client evictions %v", got)
	}
}

// A slowloris (connections that never finish their request headers) cannot
// hold the limit either: past NewGrace they count as idle.
func TestConnLimiterSlowloris(t *testing.T) {
	_, addr, _ := limitedServer(t, ConnLimits{Max: 8, PerClient: -1, NewGrace: 50 * time.Millisecond}, okOrBlock(nil, nil), nil)
	var slow []net.Conn
	for range 8 {
		c := dialFrom(t, addr, "127.0.0.2")
		io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: t\r\n") // never ends
		slow = append(slow, c)
	}
	c := dialFrom(t, addr, "127.0.0.3")
	if resp, body := ask(t, c, bufio.NewReader(c), "/ok"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("new client behind a slowloris: %s %q", resp.Status, body)
	}
	if !closed(slow[0]) {
		t.Error("the oldest half-sent connection was not closed")
	}
}

func TestConnLimiterKeepsSendfileAndReleasesOnce(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewConnLimiter(inner, ConnLimits{Max: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dialFrom(t, inner.Addr().String(), "127.0.0.2")
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Error("accepted conn does not implement io.ReaderFrom (sendfile lost)")
	}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("accepted conn lost CloseWrite")
	}
	if l.Open() != 1 {
		t.Fatalf("open %d", l.Open())
	}
	c.Close()
	c.Close()
	l.ConnState(c, http.StateClosed)
	if l.Open() != 0 {
		t.Errorf("open %d after closing twice, want 0", l.Open())
	}
	if _, err := NewConnLimiter(inner, ConnLimits{}, nil, nil); err == nil {
		t.Error("a zero limit was accepted")
	}
}

// Request sizes are bounded: headers beyond MaxHeaderBytes get 431.
func TestHugeHeadersRefused(t *testing.T) {
	_, addr, _ := limitedServer(t, ConnLimits{Max: 4}, okOrBlock(nil, nil), nil)
	c := dialFrom(t, addr, "127.0.0.2")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	big := strings.Repeat("a", MaxHeaderBytes+4096)
	go io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: "+big+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("%d KiB of headers: %s", len(big)>>10, resp.Status)
	}
}

// Many clients churning through a small limit: every request is answered
// (a client whose idle connection was closed retries on a new one, as
// net/http does), and the books balance once all have left.
func TestConnLimiterChurn(t *testing.T) {
	var mu sync.Mutex
	opened := 0
	closedCh := make(chan struct{}, 4096)
	l, addr, _ := limitedServer(t, ConnLimits{Max: 8, PerClient: -1}, okOrBlock(nil, nil), func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			mu.Lock()
			opened++
			mu.Unlock()
		case http.StateClosed:
			closedCh <- struct{}{}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%4))}}).DialContext}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			for range 20 {
				resp, err := client.Get("http://" + addr + "/ok")
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	n := opened
	mu.Unlock()
	for range n {
		select {
		case <-closedCh:
		case <-time.After(10 * time.Second):
			t.Fatalf("connections not all closed: open %d", l.Open())
		}
	}
	if l.Open() != 0 {
		t.Errorf("%d connections still booked after all closed", l.Open())
	}
}

// A new connection whose request waits unread past NewGrace is a node the
// server has not got to yet (a storm on busy cores), not a slowloris: it
// must not be closed for a newcomer. Once served and idle, it may be.
func TestConnLimiterKeepsUnreadRequest(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const grace = 20 * time.Millisecond
	l, err := NewConnLimiter(inner, ConnLimits{Max: 1, PerClient: -1, NewGrace: grace}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := inner.Addr().String()
	a := dialFrom(t, addr, "127.0.0.2")
	const req = "GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
	if _, err := io.WriteString(a, req); err != nil {
		t.Fatal(err)
	}
	sa, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	time.Sleep(2 * grace) // the grace runs out: what is tested is the time, not an ordering
	dialFrom(t, addr, "127.0.0.3")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	if !stillOpen(a) {
		t.Fatal("a connection whose request waited unread was closed for a newcomer")
	}
	select {
	case <-accepted:
		t.Fatal("the newcomer took the slot of a connection with an unread request")
	default:
	}
	// The server catches up: reads the request, answers, goes idle.
	if _, err := io.ReadFull(sa, make([]byte, len(req))); err != nil {
		t.Fatal(err)
	}
	l.ConnState(sa, http.StateActive)
	l.ConnState(sa, http.StateIdle)
	select {
	case c, ok := <-accepted:
		if !ok {
			t.Fatal("accept failed")
		}
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the newcomer was not let in once the first connection went idle")
	}
	if !closed(a) {
		t.Error("the idle connection was not closed for the newcomer")
	}
}
