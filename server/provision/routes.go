package provision

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wwcluster/ww/server/nodeapi"
)

// Metric labels of the routes; the stages' are also the stage names of
// /provision?stage=.
const (
	labelIPXE      = nodeapi.StageIPXE
	labelKernel    = nodeapi.StageKernel
	labelImage     = nodeapi.StageImage
	labelSystem    = nodeapi.StageSystem
	labelRuntime   = nodeapi.StageRuntime
	labelHeartbeat = "heartbeat"
	labelProvision = "provision"
	labelIPXEBin   = "ipxe-bin"
	labelGRUB      = "grub"
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
	mux.Handle("GET "+nodeapi.IPXEBin+"{file...}", h.instrument(labelIPXEBin, h.serveIPXEBin))
	// iPXE, in boot order (ipxe.go, kernel.go, image.go, overlay_*.go).
	get := http.MethodGet
	stage(nodeapi.IPXE.Pattern(get), labelIPXE, h.serveIPXE)
	// GRUB behind shim (Secure Boot), a GRUB with http: grub.go. (Debian's
	// signed GRUB fetches the same over TFTP: Handler.TFTPFile.)
	mux.Handle("GET "+nodeapi.GRUBConfig, h.instrument(labelGRUB, h.serveGRUBBootstrap))
	stage(nodeapi.GRUB.Pattern(get), labelGRUB, h.serveGRUB)
	h.wrongArchRoutes(mux) // wrongarch.go
	stage(nodeapi.Kernel.Pattern(get), labelKernel, h.serveKernel)
	stage(nodeapi.Image.Pattern(get), labelImage, h.serveImage)
	stage(nodeapi.SystemOverlay.Pattern(get), labelSystem, h.serveSystemOverlay)
	stage(nodeapi.RuntimeOverlay.Pattern(get), labelRuntime, h.serveRuntimeOverlay)
	// Warewulf's spelling of the same stages: /provision/{mac}?stage=NAME.
	mux.HandleFunc(nodeapi.Provision.Pattern(get), h.serveProvision)
	// Two-stage boot (twostage.go): network drivers, image index, chunks, progress.
	h.twoStageRoutes(mux)
	// The booted node's agent (wwclient); it also pulls /overlay/runtime.
	mux.Handle(nodeapi.Heartbeat.Pattern(http.MethodPost), h.instrument(labelHeartbeat, h.serveHeartbeat))

	// Operators.
	mux.Handle("GET "+nodeapi.Status, h.instrument(labelStatus, h.serveStatus))
	mux.Handle("POST "+nodeapi.StatusPrune, h.instrument(labelStatus, h.serveStatusPrune))
	mux.Handle("GET "+nodeapi.Metrics, h.instrument(labelMetrics,
		promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{ErrorLog: slogPrintln{h.log}}).ServeHTTP))
	mux.Handle("GET "+nodeapi.Healthz, h.instrument(labelHealth, h.serveHealth))

	return h.recoverer(mux)
}
