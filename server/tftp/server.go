// Package tftp is wwserver's built-in, read-only TFTP server for the iPXE
// binaries (tftp.dir, default /usr/lib/ipxe), built on pin/tftp.
//
// Names are confined to the directory with os.Root: absolute names and
// "../" are refused (and logged), symlinks cannot escape; only regular
// files are served, and FIFOs or devices are never opened. blksize and tsize
// (RFC 2348, 2349) are negotiated by the library; tftp.anticipate sets its
// sliding window. Write requests get a TFTP error. Concurrent transfers are
// bounded. Every transfer, failed or not, is counted; successes and missing
// files are recorded in the node status.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/health"
	"github.com/wwcluster/ww/server/status"
)

// LeaseLookup names the client of a transfer from its address when
// nodes.toml does not know the address (e.g. a DHCP pool lease).
// *dhcp.Server implements it.
type LeaseLookup interface {
	LeaseByIP(ip string) (mac, node string, ok bool)
}

// Generator answers names that are not files of the TFTP directory:
// wwserver's GRUB configs and a node's boot files, which GRUB behind shim
// fetches over TFTP (server/provision implements it).
type Generator interface {
	// TFTPFile returns the content of name (cleaned, without a leading
	// "/") for the client at ip. ok is false for a name it does not
	// answer: the TFTP directory serves that. An error wrapping
	// fs.ErrNotExist answers "file not found".
	TFTPFile(ctx context.Context, name, ip string) (f *File, ok bool, err error)
}

// File is generated content (see Generator).
type File struct {
	Content io.ReadSeekCloser
	Size    int64
	// Sent, when set, is called once the whole file was acknowledged and
	// records the status event itself; when nil the TFTP stage is recorded
	// as for a file of the directory.
	Sent func()
}

// Options configure a Server.
type Options struct {
	Store config.Current
	// StateDir is unused (the TFTP server keeps no state); kept so all
	// servers share one Options shape.
	StateDir   string
	Status     status.Recorder // may be nil
	Log        *slog.Logger    // nil: slog.Default()
	Registerer prometheus.Registerer
	// Leases, when set, names clients that nodes.toml doesn't know by address.
	Leases LeaseLookup
	// Generator, when set, answers the names it knows before the directory.
	Generator Generator
	// MaxTransfers bounds concurrent transfers (default 2048: a 1,000-node
	// mass reboot all at once fits; a transfer holds a goroutine, a socket
	// and a window of blocks, ~12 KB). A request
	// waits up to QueueWait (default 10s) for a slot, then gets an error;
	// at most MaxQueued requests (default MaxTransfers) wait at once, the
	// others are refused at once (each waiting request holds a goroutine
	// and a socket: a flood of requests must not exhaust them).
	MaxTransfers int
	QueueWait    time.Duration
	MaxQueued    int
	// MaxTransferTime bounds one transfer from its first block (default
	// 5 minutes): a client acknowledging just inside the retransmission
	// timeout cannot hold a slot for hours.
	MaxTransferTime time.Duration
	// Timeout is the retransmission timeout (default 2s); Retries the
	// number of retransmissions (default 5).
	Timeout time.Duration
	Retries int
}

// Server is the TFTP server. Create it with New and start it with Run.
type Server struct {
	store     config.Current
	status    status.Recorder
	log       *slog.Logger
	leases    LeaseLookup
	gen       Generator
	m         *metrics
	sem       chan struct{}
	queue     chan struct{} // requests waiting for a slot
	queueWait time.Duration
	maxTime   time.Duration
	timeout   time.Duration
	retries   int

	ready     chan struct{}
	readyOnce sync.Once
	addr      atomic.Pointer[net.UDPAddr]

	rootMu  sync.Mutex
	rootDir string
	root    *os.Root

	anticipate atomic.Int64    // window currently set on the library server
	busyLog    *health.Limiter // "too many transfers": a flood logs once a second
}

type nopRecorder struct{}

func (nopRecorder) Record(status.Event) {}

// New creates a server.
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("tftp: no config store")
	}
	s := &Server{
		store:     o.Store,
		status:    o.Status,
		log:       o.Log,
		leases:    o.Leases,
		gen:       o.Generator,
		queueWait: o.QueueWait,
		maxTime:   o.MaxTransferTime,
		timeout:   o.Timeout,
		retries:   o.Retries,
		ready:     make(chan struct{}),
		busyLog:   health.NewLimiter(time.Second, nil),
	}
	if s.status == nil {
		s.status = nopRecorder{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	max := o.MaxTransfers
	if max <= 0 {
		max = 2048
	}
	s.sem = make(chan struct{}, max)
	queued := o.MaxQueued
	if queued <= 0 {
		queued = max
	}
	s.queue = make(chan struct{}, queued)
	if s.maxTime <= 0 {
		s.maxTime = 5 * time.Minute
	}
	if s.queueWait <= 0 {
		s.queueWait = 10 * time.Second // firmware fails the boot on an error: better late than refused
	}
	if s.timeout <= 0 {
		s.timeout = 2 * time.Second
	}
	if s.retries <= 0 {
		s.retries = 5
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg, s.sem)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Ready is closed once Run has bound its socket.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address (after Ready), nil before.
func (s *Server) Addr() *net.UDPAddr { return s.addr.Load() }

// Run binds tftp.listen and serves until ctx is done. Transfers in flight
// are aborted (the client gets an error) and waited for.
//
// The library opens one socket per transfer from the goroutine that reads
// requests, which is the goroutine that called Run: a caller that entered
// a network namespace on a locked thread keeps every socket in it.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.store.Current().Server.TFTP
	lc := net.ListenConfig{Control: listenControl}
	pc, err := lc.ListenPacket(ctx, "udp4", cfg.Listen)
	if err != nil {
		return fmt.Errorf("tftp: listen %s: %w", cfg.Listen, err)
	}
	conn := pc.(*net.UDPConn)
	return s.serve(ctx, conn, cfg)
}

func (s *Server) serve(ctx context.Context, conn *net.UDPConn, cfg config.TFTP) error {
	defer s.closeRoot()
	var srv *tftp.Server
	setAnticipate := func(n uint) { srv.SetAnticipate(n) }
	srv = tftp.NewServer(s.readHandler(ctx, setAnticipate), s.writeHandler)
	srv.SetTimeout(s.timeout)
	srv.SetRetries(s.retries)
	srv.SetHook(hook{s})
	window := s.store.Current().TFTPAnticipate()
	srv.SetAnticipate(uint(window))
	s.anticipate.Store(int64(window))

	// pin/tftp turns on IP_PKTINFO in Serve, but a request that is queued
	// before that carries no interface, and the library then caps blksize
	// at 512 bytes for it. Turn it on here, before Ready, so the first
	// transfers after a start negotiate like every other one.
	if err := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		conn.Close()
		return fmt.Errorf("tftp: enable IP_PKTINFO on %s: %w", conn.LocalAddr(), err)
	}
	s.addr.Store(conn.LocalAddr().(*net.UDPAddr))
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("tftp: serving", "listen", conn.LocalAddr().String(), "dir", cfg.Dir, "anticipate", window)

	serveDone := make(chan struct{})
	shutDown := make(chan struct{})
	go func() {
		defer close(shutDown)
		select {
		case <-ctx.Done():
		case <-serveDone:
		}
		srv.Shutdown() // closes conn, waits for transfers
	}()
	err := srv.Serve(conn)
	close(serveDone)
	<-shutDown
	s.log.Info("tftp: stopped")
	if err != nil {
		return fmt.Errorf("tftp: serve: %w", err)
	}
	return nil
}
