package provision

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric labels of the routes; also the stage names of /provision?stage=.
const (
	labelIPXE      = "ipxe"
	labelKernel    = "kernel"
	labelImage     = "image"
	labelSystem    = "system"
	labelRuntime   = "runtime"
	labelHeartbeat = "heartbeat"
	labelProvision = "provision"
	labelIPXEBin   = "ipxe-bin"
	labelStatus    = "status"
	labelMetrics   = "metrics"
	labelHealth    = "healthz"
)

// routes is the whole HTTP surface, in the order a node boots.
func (h *Handler) routes() http.Handler {
	mux := http.NewServeMux()
	h.stages = map[string]http.Handler{}
	stage := func(pattern, label string, fn http.HandlerFunc) {
		hd := h.instrument(label, fn)
		h.stages[label] = hd
		mux.Handle(pattern, hd)
	}

	// Firmware without iPXE in ROM fetches iPXE itself (UEFI HTTP boot).
	mux.Handle("GET /ipxe-bin/{file...}", h.instrument(labelIPXEBin, h.serveIPXEBin))
	// iPXE, in boot order (ipxe.go, kernel.go, image.go, overlay_*.go).
	stage("GET /ipxe/{mac}", labelIPXE, h.serveIPXE)
	stage("GET /kernel/{mac}", labelKernel, h.serveKernel)
	stage("GET /image/{mac}", labelImage, h.serveImage)
	stage("GET /overlay/system/{mac}", labelSystem, h.serveSystemOverlay)
	stage("GET /overlay/runtime/{mac}", labelRuntime, h.serveRuntimeOverlay)
	// Warewulf's spelling of the same stages: /provision/{mac}?stage=NAME.
	mux.HandleFunc("GET /provision/{mac}", h.serveProvision)
	// Two-stage boot (twostage.go): network drivers, image index, chunks, progress.
	h.twoStageRoutes(mux)
	// The booted node's agent (wwclient); it also pulls /overlay/runtime.
	mux.Handle("POST /heartbeat/{mac}", h.instrument(labelHeartbeat, h.serveHeartbeat))

	// Operators.
	mux.Handle("GET /status", h.instrument(labelStatus, h.serveStatus))
	mux.Handle("POST /status/prune", h.instrument(labelStatus, h.serveStatusPrune))
	mux.Handle("GET /metrics", h.instrument(labelMetrics,
		promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{ErrorLog: slogPrintln{h.log}}).ServeHTTP))
	mux.Handle("GET /healthz", h.instrument(labelHealth, h.serveHealth))

	return h.recoverer(mux)
}
