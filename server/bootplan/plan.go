// Package bootplan decides what a node boots: its kernel, its initrds
// (image, system overlay and, unless it comes from wwclient later, the
// runtime overlay) with where to fetch each from every live server, and
// the kernel command line. It writes no boot loader syntax: server/bootscript
// renders a plan as an iPXE script (a GRUB config is to render the same
// plan), so every boot loader boots the same thing.
package bootplan

import (
	"net"
	"slices"
	"strings"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

// Names the node gives its downloads; the kernel command line refers to
// the initrds by them (iPXE's initrd=NAME).
const (
	NameKernel  = "kernel"
	NameImage   = "image.img.gz"
	NameSystem  = "system.img.gz"
	NameRuntime = "runtime.img.gz"
)

// Server is a wwserver as nodes reach it.
type Server struct {
	Address string // e.g. 10.0.2.1
	Port    int    // e.g. 9873
	URL     string // e.g. http://10.0.2.1:9873
	// Secure: the runtime overlay goes only to privileged source ports,
	// which a boot loader cannot use.
	Secure bool
}

// ServerOf is the server s configures.
func ServerOf(s *config.Server) Server {
	return Server{Address: s.Address, Port: s.Port, URL: s.URL(), Secure: s.IsSecure()}
}

// File is one download of the boot: the kernel or an initrd.
type File struct {
	Label string // short and unique in a plan: "kernel", "image", "system", "runtime"
	Name  string // what the node calls it, e.g. "image.img.gz" (NameKernel …)
	What  string // for messages, e.g. "system overlay"
	Path  string // its path on every server, e.g. /image/52:54:00:00:00:01
	URL   string // at the answering server
	// Fallbacks are the same file at the other live servers, to try in
	// order when URL fails (empty with a single server).
	Fallbacks []string
}

// Plan is what one node boots from one MAC.
type Plan struct {
	Node   *config.Node
	MAC    string // the MAC booting (in every URL and wwid=), lower-case with colons
	Server Server // the answering server
	// Servers are every live server as HOST:PORT, this one first;
	// ServerURLs their base URLs in the same order.
	Servers, ServerURLs []string
	// The node's files; Initrds lists those the boot loads, in order.
	Kernel, Image, SystemOverlay, RuntimeOverlay File
	// AssetKey: the node has an asset key, which must never be written
	// into a script anyone can fetch.
	AssetKey bool
	// FetchRuntime is false in secure mode and for nodes with an asset
	// key: the runtime overlay then comes from wwclient after boot.
	FetchRuntime bool
	// KernelArgs are the node's kernel_args, as configured.
	KernelArgs []string
	// Args is the whole kernel command line a boot loader passes (besides
	// its own initrd entries): wwid=, wwserver=, wwroot=, then KernelArgs.
	Args []string
	// ImageDigest and Modules are set for a two-stage boot (TwoStage):
	// the image index's sha256 and the network drivers loaded instead of
	// the image.
	ImageDigest string
	Modules     File
	// Arch is the image's CPU architecture (GOARCH names: amd64, arm64;
	// "" unknown), from its kernel: a boot loader running on another
	// architecture stops with a message instead of loading it
	// (WrongArchPath reports it).
	Arch string
}

// WrongArchPath is the path (at every server; GRUB over TFTP or HTTP,
// iPXE over HTTP) where a boot loader reports that it runs on loaderArch
// (its own name: GRUB's $grub_cpu, iPXE's ${buildarch}), which cannot boot
// the node's image: the server records it in status.
func (p *Plan) WrongArchPath(loaderRoute nodeapi.Route, loaderArch string) string {
	return loaderRoute.Path(p.MAC) + "/" + WrongArchSegment + "/" + loaderArch
}

// WrongArchSegment separates a MAC from the reporting boot loader's
// architecture in WrongArchPath.
const WrongArchSegment = "wrongarch"

// New returns the plan of node n booting from mac, served by srv, with
// the other live servers (HOST:PORT each, see Servers) as fallbacks of
// every download and in wwserver= on the kernel command line.
func New(srv *config.Server, n *config.Node, mac string, others []string) *Plan {
	s := ServerOf(srv)
	p := &Plan{
		Node:       n,
		MAC:        mac,
		Server:     s,
		Servers:    append([]string{nodeapi.HostPort(s.Address, s.Port)}, others...),
		ServerURLs: []string{s.URL},
		AssetKey:   n.HasAssetKey(),
		KernelArgs: make([]string, len(n.KernelArgs)),
	}
	for _, o := range others {
		p.ServerURLs = append(p.ServerURLs, nodeapi.BaseURL(o))
	}
	// With TLS the runtime overlay goes only over HTTPS, which boot loaders lack.
	p.FetchRuntime = !s.Secure && !p.AssetKey && !srv.TLS.Enabled
	p.Kernel = p.file("kernel", NameKernel, "kernel", nodeapi.Kernel)
	p.Image = p.file("image", NameImage, "image", nodeapi.Image)
	p.SystemOverlay = p.file("system", NameSystem, "system overlay", nodeapi.SystemOverlay)
	p.RuntimeOverlay = p.file("runtime", NameRuntime, "runtime overlay", nodeapi.RuntimeOverlay)
	// Values are copied as they are: a renderer refuses what its syntax
	// would read as more than a value (bootscript's ipxeSafe), rather than
	// booting a node with an argument silently rewritten.
	copy(p.KernelArgs, n.KernelArgs)
	p.Args = []string{
		nodeapi.ArgID + "=" + mac,
		nodeapi.ArgServer + "=" + strings.Join(p.Servers, ","),
		nodeapi.ArgRoot + "=" + n.Root,
	}
	if strings.Join(p.KernelArgs, " ") != "" {
		p.Args = append(p.Args, p.KernelArgs...)
	}
	return p
}

func (p *Plan) file(label, name, what string, r nodeapi.Route) File {
	f := File{Label: label, Name: name, What: what, Path: r.Path(p.MAC), URL: r.URL(p.Server.URL, p.MAC)}
	for _, base := range p.ServerURLs[1:] {
		f.Fallbacks = append(f.Fallbacks, r.URL(base, p.MAC))
	}
	return f
}

// Initrds are the initrds the boot loads, in order: the image (two-stage:
// the network drivers), the system overlay and, when FetchRuntime, the runtime overlay.
func (p *Plan) Initrds() []File {
	first := p.Image
	if p.ImageDigest != "" { // two-stage: wwclient fetches the image
		first = p.Modules
	}
	if p.FetchRuntime {
		return []File{first, p.SystemOverlay, p.RuntimeOverlay}
	}
	return []File{first, p.SystemOverlay}
}

// Files are the downloads in boot order: the kernel, then the initrds.
func (p *Plan) Files() []File { return append([]File{p.Kernel}, p.Initrds()...) }

// CommandLine is Args as one line.
func (p *Plan) CommandLine() string { return strings.Join(p.Args, " ") }

// Servers lists the live servers a node may boot from: self (HOST:PORT as
// nodes reach it) first, then each of peers (from the other servers,
// through etcd) that is a HOST:PORT and holds nothing that could split or
// expand a boot script's command line, without repeats.
func Servers(self string, peers []string) []string {
	out := []string{self}
	for _, s := range peers {
		if _, _, err := net.SplitHostPort(s); err != nil || strings.ContainsAny(s, " \t\r\n$|&;#") {
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
