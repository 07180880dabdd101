package provision

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/wwcluster/ww/server/config"
)

//go:embed templates/default.ipxe templates/unknown.ipxe
var builtinTemplates embed.FS

// File names iPXE gives the downloads; the boot line refers to them.
const (
	NameKernel  = "kernel"
	NameImage   = "image.img.gz"
	NameSystem  = "system.img.gz"
	NameRuntime = "runtime.img.gz"
)

// DefaultRetries is how often the default script tries each download.
const DefaultRetries = 5

// IPXEServer is the server as nodes reach it.
type IPXEServer struct {
	Address string // e.g. 10.0.2.1
	Port    int    // e.g. 9873
	URL     string // e.g. http://10.0.2.1:9873
	Secure  bool
}

// IPXEFetch is one download of the script.
type IPXEFetch struct {
	Label   string // iPXE label stem, e.g. "kernel"
	Command string // "kernel" or "initrd"
	Name    string // --name, e.g. "image.img.gz"
	URL     string
	What    string // for messages, e.g. "system overlay"
	// Fallbacks are the same file at the other live servers, tried in
	// order when URL fails (empty with a single server).
	Fallbacks []string
}

// IPXEData is what iPXE templates (built-in and ROOT/ipxe/NAME.ipxe) see.
type IPXEData struct {
	Node   *config.Node
	MAC    string // the MAC the script was asked for, lower-case with colons
	Server IPXEServer
	// ServerURLs are the base URLs of every live server, this one first
	// (just Server.URL with a single server).
	ServerURLs []string
	// URLs of the node's files. RuntimeOverlayURL carries no asset key.
	KernelURL, ImageURL, SystemOverlayURL, RuntimeOverlayURL string
	// FetchRuntime is false in secure mode and for nodes with an asset key:
	// the runtime overlay then comes from wwclient after boot (see
	// overlay_runtime.go).
	FetchRuntime bool
	// KernelArgs is the node's kernel_args, space separated.
	KernelArgs string
	// BootArgs is the whole kernel command line after the initrd= entries:
	// wwid=MAC wwserver=ADDR:PORT[,ADDR:PORT…] wwroot=ROOT and KernelArgs.
	BootArgs string
	// Initrds are the --name of the initrd downloads, in order.
	Initrds []string
	// Fetches are the downloads in order (kernel first).
	Fetches []IPXEFetch
	Retries int
	// ImageDigest is set for two-stage nodes (boot = "twostage"): the
	// sha256 of the image's chunk index, wwimage= on the kernel command
	// line; the image download is then the network drivers' (ModulesURL).
	// See twostage.go.
	ImageDigest, ModulesURL string
}

// UnknownData is what the unknown-node script sees.
type UnknownData struct {
	MAC    string
	Server IPXEServer
}

// Templates renders iPXE scripts: the built-in default and unknown-node
// scripts (parsed once) and the overrides in ROOT/ipxe (parsed once per
// change of the file, checked by a stat per use).
type Templates struct {
	dir     string
	def     *template.Template
	unknown *template.Template

	// peers lists the live servers of a cluster (nil: this one alone).
	peers Peers

	mu    sync.Mutex
	cache map[string]*cachedTemplate

	// Rendered scripts of the current config snapshot and server list: the
	// output depends only on (snapshot, servers, template, node, MAC), so the
	// hot path renders each once per config or membership change. Bounded by
	// the MACs in nodes.toml.
	renderMu        sync.Mutex
	renderedSnap    *config.Snapshot
	renderedServers string // the server list joined by ","
	rendered        map[renderKey][]byte
}

type renderKey struct {
	tmpl   *template.Template // a changed template file is a new pointer
	node   *config.Node
	mac    string
	digest string // two-stage image digest
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
	ctime int64
}

type cachedTemplate struct {
	stamp fileStamp
	t     *template.Template
	err   error
}

// NewTemplates returns the templates of the tree at root.
func NewTemplates(root string) (*Templates, error) {
	t := &Templates{dir: filepath.Join(root, "ipxe"), cache: map[string]*cachedTemplate{}}
	var err error
	if t.def, err = parseBuiltin("default.ipxe"); err != nil {
		return nil, err
	}
	if t.unknown, err = parseBuiltin("unknown.ipxe"); err != nil {
		return nil, err
	}
	return t, nil
}

func parseBuiltin(name string) (*template.Template, error) {
	data, err := fs.ReadFile(builtinTemplates, "templates/"+name)
	if err != nil {
		return nil, fmt.Errorf("built-in iPXE template %s: %w", name, err)
	}
	return parseTemplate(name, data)
}

func parseTemplate(name string, data []byte) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"join":  strings.Join,
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
	}).Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("parse iPXE template %s: %w", name, err)
	}
	return t, nil
}

// Builtin returns the text of the built-in default template (for
// `wwserver init` and docs).
func Builtin() string {
	data, _ := fs.ReadFile(builtinTemplates, "templates/default.ipxe")
	return string(data)
}

// lookup returns the template for a node: the built-in default when name is
// empty, else ROOT/ipxe/NAME.ipxe, reparsed only when the file changed.
func (t *Templates) lookup(name string) (*template.Template, error) {
	if name == "" {
		return t.def, nil
	}
	path := filepath.Join(t.dir, name+".ipxe")
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("iPXE template %q: %s does not exist: %w", name, path, ErrNotFound)
		}
		return nil, fmt.Errorf("iPXE template %q: %w", name, err)
	}
	st := stampOf(fi)
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.cache[name]; c != nil && c.stamp == st {
		return c.t, c.err
	}
	c := &cachedTemplate{stamp: st}
	data, err := os.ReadFile(path)
	if err != nil {
		c.err = fmt.Errorf("iPXE template %q: %w", name, err)
	} else {
		c.t, c.err = parseTemplate(name+".ipxe", data)
	}
	t.cache[name] = c
	return c.t, c.err
}

func stampOf(fi fs.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
		s.ctime = st.Ctim.Nano()
	}
	return s
}

// Peers lists the live wwservers of a cluster that shares state (see
// server/etcdstate), each as host:port, in any order.
type Peers interface {
	Servers() []string
}

// SetPeers makes scripts name every server Peers lists (nil: this one
// alone). Call it before serving.
func (t *Templates) SetPeers(p Peers) { t.peers = p }

// servers are the node-facing addresses (host:port) of the live servers:
// this one first, then the others as Peers lists them, without repeats.
func (t *Templates) servers(snap *config.Snapshot) []string {
	self := net.JoinHostPort(snap.Server.Address, strconv.Itoa(snap.Server.Port))
	out := []string{self}
	if t.peers == nil {
		return out
	}
	for _, s := range t.peers.Servers() {
		// Addresses come from the other servers through etcd: nothing
		// that could split or expand an iPXE command line.
		if _, _, err := net.SplitHostPort(s); err != nil || strings.ContainsAny(s, " \t\r\n$|&;#") {
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Data returns the template data for node n booting from mac, served by
// this server alone.
func Data(snap *config.Snapshot, n *config.Node, mac string) *IPXEData {
	return dataFor(snap, n, mac, nil, "")
}

// dataFor is Data with the other live servers (host:port each) as
// fallbacks of every download and in wwserver= on the kernel command line.
// digest is the two-stage node's image digest ("": single stage).
func dataFor(snap *config.Snapshot, n *config.Node, mac string, others []string, digest string) *IPXEData {
	srv := serverData(snap.Server)
	base := srv.URL
	d := &IPXEData{
		Node:              n,
		MAC:               mac,
		Server:            srv,
		ServerURLs:        []string{srv.URL},
		KernelURL:         base + "/kernel/" + mac,
		ImageURL:          base + "/image/" + mac,
		SystemOverlayURL:  base + "/overlay/system/" + mac,
		RuntimeOverlayURL: base + "/overlay/runtime/" + mac,
		FetchRuntime:      !srv.Secure && !n.HasAssetKey(),
		KernelArgs:        oneLine(strings.Join(n.KernelArgs, " ")),
		Retries:           DefaultRetries,
	}
	d.Fetches = []IPXEFetch{
		{Label: "kernel", Command: "kernel", Name: NameKernel, URL: d.KernelURL, What: "kernel"},
		{Label: "image", Command: "initrd", Name: NameImage, URL: d.ImageURL, What: "image"},
		{Label: "system", Command: "initrd", Name: NameSystem, URL: d.SystemOverlayURL, What: "system overlay"},
	}
	d.Initrds = []string{NameImage, NameSystem}
	if d.FetchRuntime {
		d.Fetches = append(d.Fetches, IPXEFetch{Label: "runtime", Command: "initrd", Name: NameRuntime,
			URL: d.RuntimeOverlayURL, What: "runtime overlay"})
		d.Initrds = append(d.Initrds, NameRuntime)
	}
	if n.TwoStage() && digest != "" {
		twoStageData(d, base, mac, digest)
	}
	addrs := []string{net.JoinHostPort(srv.Address, strconv.Itoa(srv.Port))}
	for _, o := range others {
		addrs = append(addrs, o)
		d.ServerURLs = append(d.ServerURLs, "http://"+o)
	}
	for i := range d.Fetches {
		f := &d.Fetches[i]
		for _, u := range d.ServerURLs[1:] {
			f.Fallbacks = append(f.Fallbacks, u+strings.TrimPrefix(f.URL, base))
		}
	}
	args := []string{
		"wwid=" + mac,
		"wwserver=" + strings.Join(addrs, ","),
	}
	if d.ImageDigest != "" {
		args = append(args, "wwimage="+d.ImageDigest)
	}
	args = append(args, "wwroot="+oneLine(n.Root))
	if d.KernelArgs != "" {
		args = append(args, d.KernelArgs)
	}
	d.BootArgs = strings.Join(args, " ")
	return d
}

func serverData(s *config.Server) IPXEServer {
	return IPXEServer{Address: s.Address, Port: s.Port, URL: s.URL(), Secure: s.IsSecure()}
}

// oneLine keeps config values from starting new iPXE commands.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Render writes the iPXE script of node n booting from mac and returns what
// to record as sent: "ipxe" for the built-in template, else the template's
// name.
func (t *Templates) Render(w io.Writer, snap *config.Snapshot, n *config.Node, mac string) (sent string, err error) {
	script, sent, err := t.Script(snap, n, mac)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(script); err != nil {
		return "", err
	}
	return sent, nil
}

// Script is Render's output itself, rendered once per (snapshot, template,
// node, MAC) and shared: the caller must not modify it.
func (t *Templates) Script(snap *config.Snapshot, n *config.Node, mac string) (script []byte, sent string, err error) {
	return t.ScriptImage(snap, n, mac, "")
}

// ScriptImage is Script for a two-stage node whose image has digest.
func (t *Templates) ScriptImage(snap *config.Snapshot, n *config.Node, mac, digest string) (script []byte, sent string, err error) {
	tp, err := t.lookup(n.IPXETemplate)
	if err != nil {
		return nil, "", err
	}
	servers := t.servers(snap)
	serversKey := strings.Join(servers, ",")
	key := renderKey{tmpl: tp, node: n, mac: mac, digest: digest}
	t.renderMu.Lock()
	if t.renderedSnap != snap || t.renderedServers != serversKey {
		t.renderedSnap, t.renderedServers, t.rendered = snap, serversKey, map[renderKey][]byte{}
	}
	script, ok := t.rendered[key]
	t.renderMu.Unlock()
	if !ok {
		// Render to memory first so a failing template sends nothing half-written.
		var buf bytes.Buffer
		if err := tp.Execute(&buf, dataFor(snap, n, mac, servers[1:], digest)); err != nil {
			return nil, "", fmt.Errorf("render iPXE template for %s: %w", n.Name, err)
		}
		script = buf.Bytes()
		t.renderMu.Lock()
		if t.renderedSnap == snap && t.renderedServers == serversKey {
			t.rendered[key] = script
		}
		t.renderMu.Unlock()
	}
	if n.IPXETemplate == "" {
		return script, "ipxe", nil
	}
	return script, n.IPXETemplate, nil
}

// RenderUnknown writes the script for a MAC no node has.
func (t *Templates) RenderUnknown(w io.Writer, snap *config.Snapshot, mac string) error {
	if err := t.unknown.Execute(w, UnknownData{MAC: mac, Server: serverData(snap.Server)}); err != nil {
		return fmt.Errorf("render unknown-node iPXE script: %w", err)
	}
	return nil
}
