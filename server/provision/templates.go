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
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"text/template/parse"
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
	tmpl *template.Template // a changed template file is a new pointer
	node *config.Node
	mac  string
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
		"join":       strings.Join,
		"lower":      strings.ToLower,
		"upper":      strings.ToUpper,
		ipxeSafeFunc: ipxeSafe,
	}).Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("parse iPXE template %s: %w", name, err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			guardActions(tt.Tree, tt.Tree.Root)
		}
	}
	return t, nil
}

// ipxeSafeFunc is the function guardActions appends to every action.
const ipxeSafeFunc = "ww_ipxe_safe"

// guardActions makes every value a template prints pass through ipxeSafe,
// as html/template adds its escapers: each {{…}} that prints (not a
// {{$x := …}}) gets "| ww_ipxe_safe" appended to its pipeline. Defence in
// depth: config validation already refuses such kernel_args, but a value
// from anywhere else (a tag a custom template prints, a node edited around
// the validator) must not become iPXE commands either.
func guardActions(tree *parse.Tree, n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			guardActions(tree, c)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 {
			return // an assignment prints nothing
		}
		ident := parse.NewIdentifier(ipxeSafeFunc).SetTree(tree).SetPos(n.Pos)
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{ident}})
	case *parse.IfNode:
		guardActions(tree, n.List)
		guardActions(tree, n.ElseList)
	case *parse.RangeNode:
		guardActions(tree, n.List)
		guardActions(tree, n.ElseList)
	case *parse.WithNode:
		guardActions(tree, n.List)
		guardActions(tree, n.ElseList)
	}
}

// ipxeSafe returns v as text/template would print it, or an error (which
// fails the whole render: no half-written script is sent) when iPXE would
// read the text as more than a value: a control character (a newline starts
// a new command), "${" (a setting expansion, anywhere in a line), or a
// token "||", "&&", ";" or one starting with "#" (iPXE splits a line at
// whitespace and has no quoting). See config.CheckKernelArg.
func ipxeSafe(v reflect.Value) (string, error) {
	s := printed(v)
	for i, r := range s {
		if r < ' ' || r == 0x7f {
			return "", fmt.Errorf("value %q holds a control character (%U at byte %d), which would end the iPXE command", s, r, i)
		}
	}
	if strings.Contains(s, "${") {
		return "", fmt.Errorf("value %q holds \"${\", which iPXE would expand as a setting", s)
	}
	for _, tok := range strings.Fields(s) {
		if tok == "||" || tok == "&&" || tok == ";" || strings.HasPrefix(tok, "#") {
			return "", fmt.Errorf("value %q holds the token %q, which iPXE reads as a command separator or comment", s, tok)
		}
	}
	return s, nil
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

// printed is v as text/template prints an action's value (its
// printableValue): pointers followed, "<no value>" for nothing.
func printed(v reflect.Value) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			break
		}
		if v.Type().Implements(errorType) || v.Type().Implements(stringerType) {
			break
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return "<no value>"
	}
	if v.CanAddr() && !v.Type().Implements(errorType) && !v.Type().Implements(stringerType) {
		if pt := reflect.PointerTo(v.Type()); pt.Implements(errorType) || pt.Implements(stringerType) {
			v = v.Addr()
		}
	}
	return fmt.Sprint(v.Interface())
}

var (
	errorType    = reflect.TypeFor[error]()
	stringerType = reflect.TypeFor[fmt.Stringer]()
)

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
	return dataFor(snap, n, mac, nil)
}

// dataFor is Data with the other live servers (host:port each) as
// fallbacks of every download and in wwserver= on the kernel command line.
func dataFor(snap *config.Snapshot, n *config.Node, mac string, others []string) *IPXEData {
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
		KernelArgs:        strings.Join(n.KernelArgs, " "),
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
		"wwroot=" + n.Root,
	}
	if d.KernelArgs != "" {
		args = append(args, d.KernelArgs)
	}
	d.BootArgs = strings.Join(args, " ")
	return d
}

func serverData(s *config.Server) IPXEServer {
	return IPXEServer{Address: s.Address, Port: s.Port, URL: s.URL(), Secure: s.IsSecure()}
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
	tp, err := t.lookup(n.IPXETemplate)
	if err != nil {
		return nil, "", err
	}
	servers := t.servers(snap)
	serversKey := strings.Join(servers, ",")
	key := renderKey{tmpl: tp, node: n, mac: mac}
	t.renderMu.Lock()
	if t.renderedSnap != snap || t.renderedServers != serversKey {
		t.renderedSnap, t.renderedServers, t.rendered = snap, serversKey, map[renderKey][]byte{}
	}
	script, ok := t.rendered[key]
	t.renderMu.Unlock()
	if !ok {
		// Render to memory first so a failing template sends nothing half-written.
		var buf bytes.Buffer
		if err := tp.Execute(&buf, dataFor(snap, n, mac, servers[1:])); err != nil {
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
