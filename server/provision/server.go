package provision

import (
	"log/slog"
	"net/http"
	"time"
)

// Timeouts of the HTTP server. File stages extend their write deadline by
// size (see serveArtifact), so WriteTimeout only bounds small answers.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second // headers + at most a 64 KiB body
	WriteTimeout      = 2 * time.Minute
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 64 << 10
)

// NewHTTPServer wraps h in an http.Server with wwserver's timeouts and
// limits; net/http's own complaints go to log.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       withConn, // conn.go: whole-file answers send the header with MSG_MORE
	}
}
