package power

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/power/ipmisim"
)

// lockedBuffer collects console output and signals when it holds a string.
type lockedBuffer struct {
	mu   sync.Mutex
	b    strings.Builder
	want string
	seen chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if l.want != "" && strings.Contains(l.b.String(), l.want) {
		close(l.seen)
		l.want = ""
	}
	return len(p), nil
}

// TestIPMISimSOL: Console through ipmi_sim's Serial-over-LAN. The test is
// the node's serial port (ipmi_sim connects to it over TCP): what the
// "node" writes shows on the console, what is typed reaches the node, and
// "~." ends the console cleanly.
func TestIPMISimSOL(t *testing.T) {
	if err := ipmisim.Available(); err != nil {
		t.Skipf("%v (run by make test, which installs it)", err)
	}
	serial, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	sim := ipmisim.Start(t, ipmisim.Options{SOL: "tcp:" + serial.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conns := make(chan net.Conn, 1)
	go func() {
		c, err := serial.Accept()
		if err == nil {
			conns <- c
		}
	}()
	out := &lockedBuffer{want: "SeaBIOS (fake node)", seen: make(chan struct{})}
	inR, inW := io.Pipe()
	activated := make(chan struct{})
	target := Target{Node: "n001", Interface: "lanplus", Address: sim.Address(), Username: ipmisim.User,
		Password: ipmisim.Password, CipherSuite: 3}
	done := make(chan error, 1)
	go func() {
		done <- Console(ctx, target, NewEscapeReader(inR), out,
			ConsoleOptions{ConnectTimeout: 10 * time.Second, Activated: func() { close(activated) }})
	}()
	var node net.Conn
	for node == nil || activated != nil {
		select {
		case node = <-conns:
			defer node.Close()
		case <-activated:
			activated = nil
		case err := <-done:
			t.Fatalf("console ended early: %v", err)
		case <-ctx.Done():
			t.Fatal("no SOL connection or activation")
		}
	}
	if _, err := node.Write([]byte("SeaBIOS (fake node)\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-out.seen:
	case err := <-done:
		t.Fatalf("console ended before the node's output arrived: %v (got %q)", err, out.b.String())
	case <-ctx.Done():
		t.Fatalf("node output not shown; console got %q", out.b.String())
	}
	typed := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(node).ReadString('\r')
		typed <- line
	}()
	if _, err := inW.Write([]byte("root\r")); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-typed:
		if !strings.HasSuffix(line, "root\r") {
			t.Errorf("node got %q, want root\\r", line)
		}
	case <-ctx.Done():
		t.Fatal("typed input never reached the node")
	}
	if _, err := inW.Write([]byte("~.")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("console after ~.: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("~. did not end the console")
	}
	// The session was deactivated: a second console gets SOL without --force.
	out2 := &lockedBuffer{}
	again := make(chan struct{})
	inR2, inW2 := io.Pipe()
	go func() {
		done <- Console(ctx, target, NewEscapeReader(inR2), out2,
			ConsoleOptions{ConnectTimeout: 10 * time.Second, Activated: func() { close(again) }})
	}()
	select {
	case <-again:
	case err := <-done:
		t.Fatalf("second console: %v", err)
	}
	_, _ = inW2.Write([]byte{0x1d})
	if err := <-done; err != nil {
		t.Fatalf("console after Ctrl-]: %v", err)
	}
}
