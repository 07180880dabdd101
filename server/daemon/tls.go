package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/provision"
	"github.com/wwcluster/ww/server/tlscert"
)

// addHTTPS serves the handler over HTTPS on tls.listen when tls.enabled
// (the runtime overlay and heartbeats: provision refuses them on plain
// HTTP then). It runs as a service, so it starts and stops with DHCP and
// TFTP; a rotated certificate is picked up without a restart.
func (s *server) addHTTPS() error {
	srvCfg := s.snap.Server
	if !srvCfg.TLS.Enabled {
		return nil
	}
	certs, err := tlscert.NewReloader(s.root)
	if err != nil {
		return fmt.Errorf("tls.enabled: %w", err)
	}
	ln, err := net.Listen("tcp", srvCfg.TLS.Listen)
	if err != nil {
		return fmt.Errorf("tls.listen: %w", err)
	}
	srv := provision.NewHTTPServer(s.handler, s.log)
	if s.o.MaxConns > 0 {
		// Its own bound, its metrics prefixed tls_.
		lim, err := provision.NewConnLimiter(ln, provision.ConnLimits{Max: s.o.MaxConns, PerClient: s.o.PerClient},
			prometheus.WrapRegistererWithPrefix("tls_", s.reg), s.log.With("svc", "https"))
		if err != nil {
			ln.Close()
			return fmt.Errorf("--max-connections: %w", err)
		}
		ln = lim
		srv.ConnState = func(c net.Conn, st http.ConnState) {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			lim.ConnState(c, st)
		}
	}
	tln := tls.NewListener(ln, certs.Config())
	s.cleanup = append(s.cleanup, func() { tln.Close() })
	s.log.Info("HTTPS for the runtime overlay and heartbeats", "listen", ln.Addr().String(), "port", srvCfg.TLS.Port)
	s.services = append(s.services, service{"https", func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(tln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}})
	return nil
}
