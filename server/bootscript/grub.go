package bootscript

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"text/template"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

//go:embed templates/default.grub templates/unknown.grub templates/bootstrap.grub
var grubTemplates embed.FS

// How GRUB fetches the files a GRUB config names (Request.Via).
const (
	// ViaTFTP: (tftp,HOST)/PATH. Debian's signed GRUB (grubnetx64, the one
	// shim accepts) has tftp but no http module, and Secure Boot forbids
	// loading one: this is how a Secure Boot node boots.
	ViaTFTP = "tftp"
	// ViaHTTP: (http,HOST:PORT)/PATH, for a GRUB with http built in.
	ViaHTTP = "http"
)

// GRUBLoad is one GRUB command that loads files: the kernel (linux, with
// the command line) or every initrd at once (initrd).
type GRUBLoad struct {
	Command string // "linux" or "initrd"
	What    string // for messages, e.g. "image, system overlay"
	// At lists, per live server (this one first), the GRUB paths of the
	// command's files there, e.g. (tftp,10.0.2.1)/kernel/52:54:00:00:00:01.
	At [][]string
}

// GRUBData is what the built-in GRUB config templates see: a boot plan in
// GRUB's terms.
type GRUBData struct {
	Node *config.Node
	MAC  string
	Via  string // ViaTFTP or ViaHTTP
	// Server is this server as GRUB names it (HOST for TFTP, HOST:PORT for
	// HTTP); Servers every live server so, this one first.
	Server  string
	Servers []string
	// Loads are the kernel, then the initrds (all of the plan's: a
	// two-stage plan's too).
	Loads []GRUBLoad
	// Args is the kernel command line, one word each (GRUB joins them
	// with spaces, as iPXE passes the line).
	Args         []string
	FetchRuntime bool
	SecureMode   bool
	Retries      int
	Tries        []int // 1 … Retries
	// Arch is the image's architecture, CPU the $grub_cpu that can boot
	// it ("" when unknown: no check); WrongArch the path at this server
	// where GRUB reports another $grub_cpu (appended).
	Arch, CPU, WrongArch string
}

// GRUBBootstrapData is what /grub/grub.cfg's template sees.
type GRUBBootstrapData struct {
	Via     string
	Servers []string // as GRUB names them, this one first
	Devices []string // "(tftp,HOST)" or "(http,HOST:PORT)", same order
}

// GRUB renders boot plans as GRUB configs: the per-node config (GET
// /grub/{mac}, TFTP grub/MAC), the unknown-node config and the
// bootstrap /grub/grub.cfg every machine gets first. GRUB script quoting
// is applied to every value from the config (kernel arguments are
// single-quoted words: nothing in them is expanded or run).
type GRUB struct {
	def, unknown, bootstrap *template.Template
	rendered                renderCache
}

var _ Renderer = (*GRUB)(nil)

// NewGRUB returns the GRUB renderer.
func NewGRUB() (*GRUB, error) {
	g := &GRUB{}
	for _, t := range []struct {
		dst  **template.Template
		name string
	}{{&g.def, "default.grub"}, {&g.unknown, "unknown.grub"}, {&g.bootstrap, "bootstrap.grub"}} {
		data, err := fs.ReadFile(grubTemplates, "templates/"+t.name)
		if err != nil {
			return nil, fmt.Errorf("built-in GRUB template %s: %w", t.name, err)
		}
		tp, err := template.New(t.name).Option("missingkey=error").Funcs(template.FuncMap{
			"join": strings.Join,
			"q":    GRUBQuote,
		}).Parse(string(data))
		if err != nil {
			return nil, fmt.Errorf("parse GRUB template %s: %w", t.name, err)
		}
		*t.dst = tp
	}
	return g, nil
}

// GRUBQuote quotes s as one GRUB script word: single quotes keep
// everything literal ($, ;, spaces, newlines); a single quote is written
// as '\”.
func GRUBQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// grubSafe refuses a plan whose command line holds a control character:
// quoting keeps $, ; and the like literal, but a newline inside quotes
// would still put a second line into the config (config validation
// refuses such kernel_args already; this is defence in depth, as ipxeSafe).
func grubSafe(p *bootplan.Plan) error {
	for _, a := range p.Args {
		for i, r := range a {
			if r < ' ' || r == 0x7f {
				return fmt.Errorf("kernel argument %q holds a control character (%U at byte %d)", a, r, i)
			}
		}
	}
	return nil
}

// grubServers names the live servers (HOST:PORT each, this one first) as
// GRUB reaches them via via, dropping any GRUB could not parse as a
// device (only letters, digits, '.', ':', '-', '[', ']' pass).
func grubServers(servers []string, via string) []string {
	var out []string
	for _, s := range servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil || strings.IndexFunc(s, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".:-[]", r))
		}) >= 0 {
			continue
		}
		if via == ViaTFTP {
			// The TFTP port is the server's tftp.listen; GRUB always uses 69.
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			out = append(out, host)
			continue
		}
		if _, err := strconv.Atoi(port); err == nil {
			out = append(out, s)
		}
	}
	return out
}

func grubDevice(via, server string) string { return "(" + via + "," + server + ")" }

func checkVia(via string) (string, error) {
	switch via {
	case "", ViaTFTP:
		return ViaTFTP, nil
	case ViaHTTP:
		return ViaHTTP, nil
	}
	return "", fmt.Errorf("GRUB: unknown transport %q", via)
}

// NewGRUBData is the template data of plan p, fetched via via.
func NewGRUBData(p *bootplan.Plan, via string) *GRUBData {
	servers := grubServers(p.Servers, via)
	d := &GRUBData{
		Node: p.Node, MAC: p.MAC, Via: via, Servers: servers,
		Args:         strings.Fields(p.CommandLine()),
		FetchRuntime: p.FetchRuntime,
		SecureMode:   p.Server.Secure,
		Retries:      DefaultRetries,
	}
	if len(servers) > 0 {
		d.Server = servers[0]
		if d.CPU = grubCPU(p.Arch); d.CPU != "" {
			d.Arch = p.Arch
			d.WrongArch = grubDevice(via, servers[0]) + p.WrongArchPath(nodeapi.GRUB, "")
		}
	}
	for i := 1; i <= d.Retries; i++ {
		d.Tries = append(d.Tries, i)
	}
	at := func(files ...bootplan.File) [][]string {
		var out [][]string
		for _, s := range servers {
			var paths []string
			for _, f := range files {
				paths = append(paths, grubDevice(via, s)+f.Path)
			}
			out = append(out, paths)
		}
		return out
	}
	d.Loads = append(d.Loads, GRUBLoad{Command: "linux", What: p.Kernel.What, At: at(p.Kernel)})
	initrds := p.Initrds()
	var what []string
	for _, f := range initrds {
		what = append(what, f.What)
	}
	d.Loads = append(d.Loads, GRUBLoad{Command: "initrd", What: strings.Join(what, ", "), At: at(initrds...)})
	return d
}

// RenderPlan writes the GRUB config of plan p (files via TFTP) and
// returns what to record as sent: "grub".
func (g *GRUB) RenderPlan(w io.Writer, p *bootplan.Plan) (sent string, err error) {
	return g.renderVia(w, p, ViaTFTP)
}

func (g *GRUB) renderVia(w io.Writer, p *bootplan.Plan, via string) (string, error) {
	if err := grubSafe(p); err != nil {
		return "", fmt.Errorf("render GRUB config for %s: %w", p.Node.Name, err)
	}
	var buf bytes.Buffer
	if err := g.def.Execute(&buf, NewGRUBData(p, via)); err != nil {
		return "", fmt.Errorf("render GRUB config for %s: %w", p.Node.Name, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return "", err
	}
	return SentGRUB, nil
}

// SentGRUB is what status records as sent for a node's GRUB config.
const SentGRUB = "grub"

// Render writes the GRUB config of node n booting from mac, served by this
// server alone (the CLI's), files via via ("" = TFTP).
func (g *GRUB) Render(w io.Writer, snap *config.Snapshot, n *config.Node, mac, via string) (sent string, err error) {
	v, err := checkVia(via)
	if err != nil {
		return "", err
	}
	return g.renderVia(w, bootplan.New(snap.Server, n, mac, nil), v)
}

// Script is the GRUB config of req's plan (files via req.Via), rendered
// once per (snapshot, server list, transport, node, MAC) and shared: the
// caller must not modify it.
func (g *GRUB) Script(req Request) (script []byte, sent string, err error) {
	via, err := checkVia(req.Via)
	if err != nil {
		return nil, "", err
	}
	key := renderKey{tmpl: g.def, node: req.Node, mac: req.MAC, via: via, digest: req.ImageDigest, arch: req.ImageArch}
	serversKey := strings.Join(req.Servers, ",")
	script, ok := g.rendered.get(req.Snap, serversKey, key)
	if !ok {
		var buf bytes.Buffer
		if _, err := g.renderVia(&buf, req.plan(), via); err != nil {
			return nil, "", err
		}
		script = buf.Bytes()
		g.rendered.put(req.Snap, serversKey, key, script)
	}
	return script, SentGRUB, nil
}

// RenderUnknown writes the GRUB config for a MAC no node has: it says so,
// waits and reboots.
func (g *GRUB) RenderUnknown(w io.Writer, snap *config.Snapshot, mac string) error {
	if err := g.unknown.Execute(w, UnknownData{MAC: mac, Server: bootplan.ServerOf(snap.Server)}); err != nil {
		return fmt.Errorf("render unknown-node GRUB config: %w", err)
	}
	return nil
}

// Bootstrap writes /grub/grub.cfg, the config every machine's GRUB reads
// first (GRUB asks for $prefix/grub.cfg: no per-MAC name): it loads
// /grub/${net_default_mac} from each live server (HOST:PORT, this one
// first) in turn, via via ("" = TFTP).
func (g *GRUB) Bootstrap(w io.Writer, servers []string, via string) error {
	v, err := checkVia(via)
	if err != nil {
		return err
	}
	d := GRUBBootstrapData{Via: v, Servers: grubServers(servers, v)}
	for _, s := range d.Servers {
		d.Devices = append(d.Devices, grubDevice(v, s))
	}
	if err := g.bootstrap.Execute(w, d); err != nil {
		return fmt.Errorf("render GRUB bootstrap config: %w", err)
	}
	return nil
}
