package provision

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// recoverer turns a handler panic into a logged, counted 500 instead of a
// dropped connection. http.ErrAbortHandler keeps its meaning.
func (h *Handler) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			h.metrics.errors.WithLabelValues("panic").Inc()
			h.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			// When the response had started this only logs "superfluous WriteHeader".
			http.Error(w, "internal server error", http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}

// instrument counts requests by route label and status code, and the bytes
// sent.
func (h *Handler) instrument(label string, next http.HandlerFunc) http.Handler {
	bytes := h.metrics.bytes.WithLabelValues(label)
	var byCode sync.Map // status code → prometheus.Counter, saves a label lookup per request
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		h.metrics.inflight.Inc()
		defer h.metrics.inflight.Dec()
		next(cw, r)
		code := cw.Status()
		c, ok := byCode.Load(code)
		if !ok {
			c, _ = byCode.LoadOrStore(code, h.metrics.requests.WithLabelValues(label, strconv.Itoa(code)))
		}
		c.(prometheus.Counter).Inc()
		bytes.Add(float64(cw.n))
	})
}

// countingWriter remembers the status code and counts body bytes. It keeps
// the underlying writer reachable (Unwrap, for http.ResponseController) and
// its io.ReaderFrom (sendfile for plain files).
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
	// onHeader, when set, is called once with the final status code, before
	// the header goes out.
	onHeader func(code int)
}

func (c *countingWriter) setStatus(code int) {
	if c.status != 0 {
		return
	}
	c.status = code
	if c.onHeader != nil {
		c.onHeader(code)
	}
}

func (c *countingWriter) WriteHeader(code int) {
	if code >= 200 {
		c.setStatus(code)
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.setStatus(http.StatusOK)
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	c.setStatus(http.StatusOK)
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{c.ResponseWriter}, src)
	}
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Status is the response code (200 when the handler wrote nothing).
func (c *countingWriter) Status() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}

type writerOnly struct{ io.Writer }

// slogPrintln adapts slog to promhttp's error logger.
type slogPrintln struct{ log *slog.Logger }

func (l slogPrintln) Println(v ...any) { l.log.Error("metrics", "err", fmt.Sprint(v...)) }
