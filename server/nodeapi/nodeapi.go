// Package nodeapi is the contract between wwserver and the nodes it boots:
// the HTTP routes (firmware, iPXE and wwclient fetch from them), how their
// URLs are built, the kernel command line keys wwserver writes and wwclient
// reads, and the heartbeat message. Both binaries import it, so each route
// string and message type is written once; it imports nothing else of this
// module (wwclient must not pull the server in).
package nodeapi

import (
	"net"
	"strconv"
	"strings"
)

// DefaultPort is wwserver's HTTP port when an address names none.
const DefaultPort = 9873

// Route is a per-node route: its path is the route followed by the node's
// MAC, lower-case with colons (wwserver also accepts '-' and any case).
type Route string

// The per-node routes, in the order a node boots.
const (
	IPXE           Route = "/ipxe/"            // GET: the node's iPXE script
	Kernel         Route = "/kernel/"          // GET: its kernel
	Image          Route = "/image/"           // GET: its image, gzip newc cpio
	SystemOverlay  Route = "/overlay/system/"  // GET: its system overlay
	RuntimeOverlay Route = "/overlay/runtime/" // GET: its runtime overlay (also wwclient's, every interval)
	Heartbeat      Route = "/heartbeat/"       // POST: wwclient's HeartbeatMessage
	// Provision is Warewulf's spelling of the GET stages:
	// /provision/{mac}?stage=NAME, NAME one of Stages.
	Provision Route = "/provision/"
	// GRUB is the node's GRUB config (GET, and over TFTP as grub/MAC:
	// GRUB behind shim, for Secure Boot). GRUB asks for GRUBConfig first.
	GRUB Route = "/grub/"
)

// GRUBConfig is the config GRUB reads first, the same for every machine
// (GRUB names no MAC): over TFTP (as grub/grub.cfg, the TFTP root's) and
// HTTP. It loads GRUB.Path(${net_default_mac}).
const GRUBConfig = "/grub/grub.cfg"

// TFTPName is the TFTP name of a route path: the path without its leading
// "/" (GRUB fetches a node's files over TFTP under the HTTP paths).
func TFTPName(path string) string { return strings.TrimPrefix(path, "/") }

// MACWildcard is the name of the MAC in a Route's server-side pattern.
const MACWildcard = "mac"

// Path is r's path for mac, e.g. /kernel/52:54:00:00:00:01.
func (r Route) Path(mac string) string { return string(r) + mac }

// URL is r's URL for mac at the server whose base URL is base
// (http://HOST:PORT or https://…, no trailing slash).
func (r Route) URL(base, mac string) string { return base + string(r) + mac }

// Pattern is r's net/http ServeMux pattern for method; the MAC is
// r.PathValue(MACWildcard).
func (r Route) Pattern(method string) string {
	return method + " " + string(r) + "{" + MACWildcard + "}"
}

// Server-wide routes.
const (
	// IPXEBin is followed by a file name of the iPXE binaries directory
	// (tftp.dir): UEFI HTTP boot fetches iPXE from there.
	IPXEBin     = "/ipxe-bin/"
	Status      = "/status"       // GET: the status report (JSON)
	StatusPrune = "/status/prune" // POST: drop nodes' status (loopback only)
	Metrics     = "/metrics"      // GET: Prometheus
	Healthz     = "/healthz"      // GET: ok, or 503 and why
)

// IPXEBinURL is the URL of the iPXE binary file at the server whose base
// URL is base.
func IPXEBinURL(base, file string) string { return base + IPXEBin + file }

// BaseURL is the base URL of the server at hostport (HOST:PORT): wwserver
// serves nodes plain HTTP, which firmware and iPXE speak.
func BaseURL(hostport string) string { return "http://" + hostport }

// HostPort joins a server's address and port as nodes name it.
func HostPort(address string, port int) string {
	return net.JoinHostPort(address, strconv.Itoa(port))
}

// Query parameters.
const (
	// AssetKeyParam carries the node's asset key on the runtime overlay
	// and heartbeat routes (?assetkey=K).
	AssetKeyParam = "assetkey"
	// StageParam names the stage of a Provision request (?stage=NAME).
	StageParam = "stage"
)

// Stage names of Provision requests (Warewulf's), in boot order.
const (
	StageIPXE    = "ipxe"
	StageKernel  = "kernel"
	StageImage   = "image"
	StageSystem  = "system"
	StageRuntime = "runtime"
)

// Stages lists the Provision stage names, in boot order.
func Stages() []string {
	return []string{StageIPXE, StageKernel, StageImage, StageSystem, StageRuntime}
}

// StageRoutes maps each Provision stage name to its route.
func StageRoutes() map[string]Route {
	return map[string]Route{
		StageIPXE: IPXE, StageKernel: Kernel, StageImage: Image,
		StageSystem: SystemOverlay, StageRuntime: RuntimeOverlay,
	}
}

// Kernel command line keys wwserver's boot scripts set and wwclient reads
// (KEY=VALUE).
const (
	// ArgID is the MAC the node booted from (the one in its URLs).
	ArgID = "wwid"
	// ArgServer lists the live servers as HOST:PORT[,HOST:PORT…], the
	// one that served the boot first.
	ArgServer = "wwserver"
	// ArgRoot is the root mode: RootTmpfs or RootInitramfs.
	ArgRoot = "wwroot"
)

// Root modes (node key root, kernel wwroot=).
const (
	RootTmpfs     = "tmpfs"     // copy the root to a tmpfs and switch_root
	RootInitramfs = "initramfs" // stay in the initramfs
)
