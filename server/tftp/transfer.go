package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/wwcluster/ww/server/regularfile"
	"github.com/wwcluster/ww/server/status"
)

// Errors sent to clients (as the TFTP error message; pin/tftp always uses
// error code 1).
var (
	errNotFound   = errors.New("file not found")
	errBadName    = errors.New("access violation: name outside the TFTP directory")
	errBusy       = errors.New("server busy, try again")
	errReadOnly   = errors.New("access violation: read-only server")
	errDir        = errors.New("TFTP directory unavailable")
	errNotRegular = errors.New("access violation: not a regular file")
	errGenerated  = errors.New("server error (see the server log)")
)

// cleanName validates a requested file name and returns it relative to the
// TFTP directory. A leading "/" names the root of the TFTP directory, as it
// does to GRUB, iPXE and most firmware (tftp-hpa -s and dnsmasq serve it so:
// GRUB asks for /grub/grub.cfg); any ".." element is refused, as are empty
// names, NUL bytes and a leading backslash. (os.Root also stops symlinks
// escaping.)
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || strings.HasPrefix(name, `\`) {
		return "", errBadName
	}
	name = strings.TrimLeft(name, "/")
	for _, el := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if el == ".." {
			return "", errBadName
		}
	}
	c := path.Clean(name)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", errBadName
	}
	return c, nil
}

// printable shortens and quotes a client-supplied name for logs and status.
func printable(name string) string {
	if len(name) > 128 {
		name = name[:128] + "…"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return strconv.QuoteToASCII(name)
		}
	}
	return name
}

// rootFor returns the os.Root of dir, reopening it when tftp.dir changed.
func (s *Server) rootFor(dir string) (*os.Root, error) {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if s.root != nil && s.rootDir == dir {
		return s.root, nil
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open tftp dir: %w", err)
	}
	if s.root != nil {
		// Transfers still reading from the old root keep their open files.
		s.root.Close()
	}
	s.root, s.rootDir = r, dir
	return r, nil
}

func (s *Server) closeRoot() {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if s.root != nil {
		s.root.Close()
		s.root = nil
	}
}

// client identifies the peer of a transfer.
type client struct {
	ip, mac, node string
}

// lookup names the client: a node address from nodes.toml first, then the
// DHCP leases.
func (s *Server) lookup(ip string) client {
	c := client{ip: ip}
	if n := s.store.Current().Nodes.ByIP[ip]; n != nil {
		c.node = n.Name
		for _, d := range n.Network {
			if d.IPAddr == ip {
				c.mac = d.HWAddr
			}
		}
		return c
	}
	if s.leases != nil {
		if mac, node, ok := s.leases.LeaseByIP(ip); ok {
			c.mac, c.node = mac, node
		}
	}
	return c
}

func (s *Server) record(c client, sent string) {
	s.status.Record(status.Event{MAC: c.mac, Node: c.node, IP: c.ip, Stage: status.StageTFTP, Sent: sent})
}

// readHandler serves read requests. setAnticipate applies a changed
// tftp.anticipate to the library (it takes effect from the next transfer).
func (s *Server) readHandler(ctx context.Context, setAnticipate func(uint)) func(string, io.ReaderFrom) error {
	return func(filename string, rf io.ReaderFrom) error {
		start := time.Now()
		var peer net.UDPAddr
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			peer = ot.RemoteAddr()
		}
		c := s.lookup(peer.IP.String())
		log := s.log.With("client", peer.String(), "file", printable(filename), "node", c.node)

		snap := s.store.Current()
		cfg := snap.Server.TFTP
		if w := snap.TFTPAnticipate(); int64(w) != s.anticipate.Load() {
			setAnticipate(uint(w))
			s.anticipate.Store(int64(w))
			log.Info("tftp: window changed (from the next transfer)", "anticipate", w, "grub", snap.UsesGRUB())
		}

		if err := s.acquire(ctx); err != nil {
			s.m.errors.WithLabelValues("busy").Inc()
			if skipped, ok := s.busyLog.AllowCount("busy"); ok { // a flood logs once a second
				log.Warn("tftp: too many transfers; refused", "max", cap(s.sem), "why", err, "refused_unlogged", skipped)
			}
			return errBusy
		}
		defer func() { <-s.sem }()

		name, err := cleanName(filename)
		if err != nil {
			s.m.errors.WithLabelValues("bad_name").Inc()
			log.Warn("tftp: refused name outside the directory")
			s.record(c, "REFUSED:"+printable(filename))
			return err
		}
		if s.gen != nil {
			g, ok, err := s.gen.TFTPFile(ctx, name, c.ip)
			if ok {
				return s.sendGenerated(ctx, rf, log, c, name, g, err)
			}
		}
		f, fi, err := s.openFile(cfg.Dir, name, c, log)
		if err != nil {
			return err
		}
		defer f.Close()

		// tsize: the library seeks the reader when the client asks for it
		// (and only in octet mode, where the size is right); see fileReader.
		if err := s.send(ctx, rf, log, f, fi.Size(), start); err != nil {
			return err
		}
		s.record(c, name)
		return nil
	}
}

// openFile opens name for a transfer: a configured boot file by its path,
// anything else inside dir. A refusal is counted, logged and recorded as
// the client's stage; the error is what the client is sent.
func (s *Server) openFile(dir, name string, c client, log *slog.Logger) (*os.File, fs.FileInfo, error) {
	root, err := s.rootFor(dir)
	if err != nil {
		s.m.errors.WithLabelValues("dir_error").Inc()
		log.Error("tftp: directory unavailable", "dir", dir, "err", err)
		return nil, nil, errDir
	}
	var f *os.File
	var fi fs.FileInfo
	if p, ok := s.store.Current().Server.BootFile(name); ok {
		f, fi, err = regularfile.OpenPath(p) // a configured boot file, resolved at config load (trusted)
	} else {
		f, fi, err = regularfile.Open(root, name)
	}
	if errors.Is(err, regularfile.ErrNotRegular) {
		// A FIFO or device is never opened (it could block a slot
		// forever); directories land here too.
		s.m.errors.WithLabelValues("not_regular").Inc()
		log.Warn("tftp: refused a file that is not a regular file", "err", err)
		s.record(c, "REFUSED:"+printable(name))
		return nil, nil, errNotRegular
	}
	if err != nil {
		reason := "not_found"
		if !errors.Is(err, fs.ErrNotExist) {
			reason = "open_error"
		}
		s.m.errors.WithLabelValues(reason).Inc()
		log.Warn("tftp: file not served", "reason", reason, "err", err)
		s.record(c, "NOT_FOUND:"+printable(name))
		return nil, nil, errNotFound
	}
	return f, fi, nil
}

// send transfers r (size bytes) to the client; nil once all of it went
// out. A size probe (see below) returns its error without counting it as
// a failure.
func (s *Server) send(ctx context.Context, rf io.ReaderFrom, log *slog.Logger, r io.ReadSeeker, size int64, start time.Time) error {
	n, err := sendFile(rf, &fileReader{ctx: ctx, f: r, deadline: time.Now().Add(s.maxTime), limit: s.maxTime})
	if err != nil && n == 0 && strings.Contains(err.Error(), "code=8") {
		// The client ended the transfer after our OACK (RFC 2347 error
		// 8): UEFI PXE does this to learn the size (tsize) before the
		// real download. Not a failure.
		log.Debug("tftp: size probe", "size", size)
		return err
	}
	if err != nil {
		s.m.errors.WithLabelValues("transfer").Inc()
		log.Warn("tftp: transfer failed", "sent", n, "size", size, "err", err)
		return err
	}
	s.m.transfers.Inc()
	s.m.bytes.Add(float64(n))
	dur := time.Since(start)
	log.Info("tftp: sent", "bytes", n, "duration", dur.Round(time.Millisecond))
	return nil
}

// sendGenerated answers a name the Generator knows: g (when gerr is nil)
// is sent and recorded (by g.Sent, else as the TFTP stage).
func (s *Server) sendGenerated(ctx context.Context, rf io.ReaderFrom, log *slog.Logger, c client, name string, g *File, gerr error) error {
	if gerr != nil {
		if errors.Is(gerr, fs.ErrNotExist) {
			s.m.errors.WithLabelValues("not_found").Inc()
			log.Warn("tftp: file not served", "reason", "not_found", "err", gerr)
			return errNotFound
		}
		s.m.errors.WithLabelValues("open_error").Inc()
		log.Error("tftp: generated file failed", "err", gerr)
		return errGenerated
	}
	defer g.Content.Close()
	if err := s.send(ctx, rf, log, g.Content, g.Size, time.Now()); err != nil {
		return err
	}
	if g.Sent != nil {
		g.Sent()
	} else {
		s.record(c, name)
	}
	return nil
}

// acquire takes a transfer slot, waiting up to queueWait when all are in
// use, unless too many requests wait already.
func (s *Server) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.queue <- struct{}{}:
		defer func() { <-s.queue }()
	default:
		return errors.New("wait queue full")
	}
	t := time.NewTimer(s.queueWait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-t.C:
		return errors.New("no slot freed in time")
	case <-ctx.Done():
		return errors.New("shutting down")
	}
}

// sendFile runs the library's transfer of r. pin/tftp v3.1.0 panics when
// the reader fails while the sliding window (anticipate) is on: its
// readFromAnticipate aborts with a shadowed, nil error. Without this, a
// shutdown or time limit during a windowed transfer crashed wwserver. The
// reader's own error is returned instead; the library has closed the
// transfer's socket by then, so that client sees a timeout rather than
// the error message (with tftp.anticipate = 1 it gets the message).
func sendFile(rf io.ReaderFrom, r *fileReader) (n int64, err error) {
	defer func() {
		if v := recover(); v != nil {
			if r.err == nil {
				panic(v) // not the known case
			}
			n, err = 0, r.err
		}
	}()
	return rf.ReadFrom(r)
}

// writeHandler refuses every write request with a TFTP error.
func (s *Server) writeHandler(filename string, wt io.WriterTo) error {
	s.m.errors.WithLabelValues("write_refused").Inc()
	peer := ""
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		a := it.RemoteAddr()
		peer = a.String()
	}
	s.log.Warn("tftp: write request refused (read-only server)", "client", peer, "file", printable(filename))
	return errReadOnly
}

// fileReader reads f until ctx ends (so Shutdown aborts transfers quickly)
// or the transfer's time limit passes.
// It is an io.Seeker, which pin/tftp uses to answer the tsize option: it
// wraps the reader in a netascii converter (not a Seeker) for netascii
// transfers, so tsize is only sent when it is exact. (Calling SetSize
// would announce the octet size to netascii clients too.)
type fileReader struct {
	ctx      context.Context
	f        io.ReadSeeker
	deadline time.Time     // the transfer is aborted after it
	limit    time.Duration // for the error message
	err      error         // the last error other than io.EOF
}

func (r *fileReader) Read(p []byte) (int, error) {
	switch {
	case r.ctx.Err() != nil:
		r.err = errors.New("server shutting down")
	case time.Now().After(r.deadline):
		r.err = fmt.Errorf("transfer time limit (%v) exceeded", r.limit)
	default:
		n, err := r.f.Read(p)
		if err != nil && err != io.EOF {
			r.err = err
		}
		return n, err
	}
	return 0, r.err
}

func (r *fileReader) Seek(off int64, whence int) (int64, error) { return r.f.Seek(off, whence) }

// hook counts request-level failures from the library's serve loop
// (malformed packets, unexpected opcodes); transfer failures are counted
// by the handlers.
type hook struct{ s *Server }

func (h hook) OnSuccess(tftp.TransferStats) {}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	if st.Filename != "" {
		return
	}
	h.s.m.errors.WithLabelValues("bad_packet").Inc()
	h.s.log.Log(context.Background(), slog.LevelDebug, "tftp: bad request", "err", err)
}
