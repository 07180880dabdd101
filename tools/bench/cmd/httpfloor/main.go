// Command httpfloor is the floor of the iPXE-script target: Go's net/http
// with wwserver's timeouts and limits (provision.NewHTTPServer) answering
// every GET with the same fixed body, nothing else. Measured next to
// wwserver and nginx in the same run (tools/bench/targets.sh), it shows how
// much of wwserver's CPU per request is net/http's own.
//
//	httpfloor -listen 127.0.0.1:29881 -size 300
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/wwcluster/ww/server/provision"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:29881", "loopback address to serve on")
	size := flag.Int("size", 300, "body size in bytes (1..1048576)")
	flag.Parse()
	if err := run(*listen, *size); err != nil {
		fmt.Fprintln(os.Stderr, "httpfloor:", err)
		os.Exit(1)
	}
}

func run(listen string, size int) error {
	if size < 1 || size > 1<<20 {
		return fmt.Errorf("-size %d: want 1..1048576", size)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: loopback addresses only", listen)
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	length := []string{strconv.Itoa(size)}
	textPlain := []string{"text/plain; charset=utf-8"}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := provision.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = textPlain
		h["Content-Length"] = length
		_, _ = w.Write(body)
	}), log)
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
