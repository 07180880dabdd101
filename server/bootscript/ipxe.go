package bootscript

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/template"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

//go:embed templates/default.ipxe templates/unknown.ipxe
var builtinTemplates embed.FS

// DefaultRetries is how often the default script tries each download.
const DefaultRetries = 5

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

// IPXEData is what iPXE templates (built-in and ROOT/ipxe/NAME.ipxe) see:
// a boot plan in the shape admins' templates know (keep its fields).
type IPXEData struct {
	Node   *config.Node
	MAC    string // the MAC the script was asked for, lower-case with colons
	Server bootplan.Server
	// ServerURLs are the base URLs of every live server, this one first
	// (just Server.URL with a single server).
	ServerURLs []string
	// URLs of the node's files. RuntimeOverlayURL carries no asset key.
	KernelURL, ImageURL, SystemOverlayURL, RuntimeOverlayURL string
	// FetchRuntime is false in secure mode and for nodes with an asset key:
	// the runtime overlay then comes from wwclient after boot (see
	// server/provision/overlay_runtime.go).
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
	ImageDigest, ModulesURL string
	// Arch is the image's architecture and ArchOK the iPXE ${buildarch}
	// values that boot it (nil when unknown: no check); WrongArchURL is
	// where iPXE reports another one (${buildarch} appended).
	Arch         string
	ArchOK       []string
	WrongArchURL string
}

// UnknownData is what the unknown-node script sees.
type UnknownData struct {
	MAC    string
	Server bootplan.Server
}

// IPXE renders boot plans as iPXE scripts: the built-in default and
// unknown-node scripts (parsed once) and the admin's overrides in
// ROOT/ipxe/NAME.ipxe (node key ipxe_template = "NAME").
type IPXE struct {
	def       *template.Template
	unknown   *template.Template
	overrides *overrides
	rendered  renderCache
}

// NewIPXE returns the iPXE renderer of the tree at root.
func NewIPXE(root string) (*IPXE, error) {
	t := &IPXE{overrides: newOverrides(root, "ipxe", ".ipxe", "iPXE template", parseTemplate)}
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

// Builtin returns the text of the built-in default template (for
// `wwserver init` and docs).
func Builtin() string {
	data, _ := fs.ReadFile(builtinTemplates, "templates/default.ipxe")
	return string(data)
}

// NewIPXEData is the template data of plan p.
func NewIPXEData(p *bootplan.Plan) *IPXEData {
	d := &IPXEData{
		Node:              p.Node,
		MAC:               p.MAC,
		Server:            p.Server,
		ServerURLs:        p.ServerURLs,
		KernelURL:         p.Kernel.URL,
		ImageURL:          p.Image.URL,
		SystemOverlayURL:  p.SystemOverlay.URL,
		RuntimeOverlayURL: p.RuntimeOverlay.URL,
		FetchRuntime:      p.FetchRuntime,
		KernelArgs:        strings.Join(p.KernelArgs, " "),
		BootArgs:          p.CommandLine(),
		Retries:           DefaultRetries,
		ImageDigest:       p.ImageDigest,
		ModulesURL:        p.Modules.URL,
	}
	if d.ArchOK = ipxeArches(p.Arch); d.ArchOK != nil {
		d.Arch = p.Arch
		d.WrongArchURL = p.Server.URL + p.WrongArchPath(nodeapi.IPXE, "")
	}
	d.Fetches = []IPXEFetch{ipxeFetch("kernel", p.Kernel)}
	for _, f := range p.Initrds() {
		d.Fetches = append(d.Fetches, ipxeFetch("initrd", f))
		d.Initrds = append(d.Initrds, f.Name)
	}
	return d
}

func ipxeFetch(command string, f bootplan.File) IPXEFetch {
	return IPXEFetch{Label: f.Label, Command: command, Name: f.Name, URL: f.URL, What: f.What, Fallbacks: f.Fallbacks}
}

// Render writes the iPXE script of node n booting from mac, served by
// this server alone (the CLI's), and returns what to record as sent (see
// RenderPlan).
func (t *IPXE) Render(w io.Writer, snap *config.Snapshot, n *config.Node, mac string) (sent string, err error) {
	return t.RenderPlan(w, bootplan.New(snap.Server, n, mac, nil))
}

// RenderPlan writes the iPXE script of plan p and returns what to record
// as sent: "ipxe" for the built-in template, else the template's name.
func (t *IPXE) RenderPlan(w io.Writer, p *bootplan.Plan) (sent string, err error) {
	tp, err := t.template(p.Node)
	if err != nil {
		return "", err
	}
	// Render to memory first so a failing template sends nothing half-written.
	var buf bytes.Buffer
	if err := tp.Execute(&buf, NewIPXEData(p)); err != nil {
		return "", fmt.Errorf("render iPXE template for %s: %w", p.Node.Name, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return "", err
	}
	return sentName(p.Node), nil
}

// Script is RenderPlan's output for req's plan, rendered once per
// (snapshot, server list, template, node, MAC) and shared: the caller
// must not modify it.
func (t *IPXE) Script(req Request) (script []byte, sent string, err error) {
	tp, err := t.template(req.Node)
	if err != nil {
		return nil, "", err
	}
	key := renderKey{tmpl: tp, node: req.Node, mac: req.MAC, digest: req.ImageDigest, arch: req.ImageArch}
	serversKey := strings.Join(req.Servers, ",")
	script, ok := t.rendered.get(req.Snap, serversKey, key)
	if !ok {
		var buf bytes.Buffer
		if err := tp.Execute(&buf, NewIPXEData(req.plan())); err != nil {
			return nil, "", fmt.Errorf("render iPXE template for %s: %w", req.Node.Name, err)
		}
		script = buf.Bytes()
		t.rendered.put(req.Snap, serversKey, key, script)
	}
	return script, sentName(req.Node), nil
}

// template is the template node n's script is rendered with.
func (t *IPXE) template(n *config.Node) (*template.Template, error) {
	if n.IPXETemplate == "" {
		return t.def, nil
	}
	return t.overrides.lookup(n.IPXETemplate)
}

// sentName is what status records as sent for node n's script.
func sentName(n *config.Node) string {
	if n.IPXETemplate == "" {
		return "ipxe"
	}
	return n.IPXETemplate
}

// RenderUnknown writes the script for a MAC no node has.
func (t *IPXE) RenderUnknown(w io.Writer, snap *config.Snapshot, mac string) error {
	if err := t.unknown.Execute(w, UnknownData{MAC: mac, Server: bootplan.ServerOf(snap.Server)}); err != nil {
		return fmt.Errorf("render unknown-node iPXE script: %w", err)
	}
	return nil
}
