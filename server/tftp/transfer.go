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
)

// cleanName validates a requested file name and returns it relative to the
// TFTP directory. Absolute names and any ".." element are refused, as are
// empty names and NUL bytes. (os.Root also stops symlinks escaping.)
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", errBadName
	}
	if strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) {
		return "", errBadName
	}
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

		cfg := s.store.Current().Server.TFTP
		if int64(cfg.Anticipate) != s.anticipate.Load() {
			setAnticipate(uint(cfg.Anticipate))
			s.anticipate.Store(int64(cfg.Anticipate))
		}

		select {
		case s.sem <- struct{}{}:
		default:
			t := time.NewTimer(s.queueWait)
			select {
			case s.sem <- struct{}{}:
				t.Stop()
			case <-t.C:
				s.m.errors.WithLabelValues("busy").Inc()
				log.Warn("tftp: too many transfers; refused", "max", cap(s.sem))
				return errBusy
			case <-ctx.Done():
				t.Stop()
				return errBusy
			}
		}
		defer func() { <-s.sem }()

		name, err := cleanName(filename)
		if err != nil {
			s.m.errors.WithLabelValues("bad_name").Inc()
			log.Warn("tftp: refused name outside the directory")
			s.record(c, "REFUSED:"+printable(filename))
			return err
		}
		root, err := s.rootFor(cfg.Dir)
		if err != nil {
			s.m.errors.WithLabelValues("dir_error").Inc()
			log.Error("tftp: directory unavailable", "dir", cfg.Dir, "err", err)
			return errDir
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
			return errNotRegular
		}
		if err != nil {
			reason := "not_found"
			if !errors.Is(err, fs.ErrNotExist) {
				reason = "open_error"
			}
			s.m.errors.WithLabelValues(reason).Inc()
			log.Warn("tftp: file not served", "reason", reason, "err", err)
			s.record(c, "NOT_FOUND:"+printable(name))
			return errNotFound
		}
		defer f.Close()

		// tsize: the library seeks the reader when the client asks for it
		// (and only in octet mode, where the size is right); see fileReader.
		n, err := rf.ReadFrom(&fileReader{ctx: ctx, f: f})
		if err != nil && n == 0 && strings.Contains(err.Error(), "code=8") {
			// The client ended the transfer after our OACK (RFC 2347 error
			// 8): UEFI PXE does this to learn the size (tsize) before the
			// real download. Not a failure.
			log.Debug("tftp: size probe", "size", fi.Size())
			return err
		}
		if err != nil {
			s.m.errors.WithLabelValues("transfer").Inc()
			log.Warn("tftp: transfer failed", "sent", n, "size", fi.Size(), "err", err)
			return err
		}
		s.m.transfers.Inc()
		s.m.bytes.Add(float64(n))
		dur := time.Since(start)
		log.Info("tftp: sent", "bytes", n, "duration", dur.Round(time.Millisecond))
		s.record(c, name)
		return nil
	}
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

// fileReader reads f until ctx ends (so Shutdown aborts transfers quickly).
// It is an io.Seeker, which pin/tftp uses to answer the tsize option: it
// wraps the reader in a netascii converter (not a Seeker) for netascii
// transfers, so tsize is only sent when it is exact. (Calling SetSize
// would announce the octet size to netascii clients too.)
type fileReader struct {
	ctx context.Context
	f   *os.File
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, errors.New("server shutting down")
	}
	return r.f.Read(p)
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
