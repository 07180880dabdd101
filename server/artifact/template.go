package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostkeys"
	"github.com/wwcluster/ww/server/netrender"
)

// TemplateData is what overlay templates (*.ww) see as ".".
type TemplateData struct {
	Node   *config.Node         // the node the overlay is rendered for
	Nodes  []*config.PublicNode // all nodes, sorted by name, without their asset keys
	Server TemplateServer

	imageDir string // the node's image rootfs, for ImageFile
	netStack string // the stack the node's devices are rendered for (netfiles.go)
	// hostkeys.go: the tree's key store, whether this is a runtime overlay
	// (the only one host keys go into), the node's key files' stamp
	keys      *hostkeys.Store
	runtime   bool
	keysStamp string
}

// ImageFile returns the content of a file of the node's image, name being a
// path inside its rootfs such as "etc/passwd", or "" when the image has no
// such file. It reads through os.Root: nothing outside the image is read
// (a symlink leading out of it is an error). Templates call it with a string
// literal, {{.ImageFile "etc/passwd"}}, because the files it names are part
// of the cache key of the rendered overlay.
func (d *TemplateData) ImageFile(name string) (string, error) {
	b, err := readImageFile(d.imageDir, name)
	return string(b), err
}

// readImageFile reads name in the image rootfs dir (nil, nil when either is
// missing), at most maxTemplateSize bytes.
func readImageFile(dir, name string) ([]byte, error) {
	if dir == "" {
		return nil, nil // no image configured: its build reports that
	}
	r, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ImageFile %q: %w", name, err)
	}
	defer r.Close()
	f, err := openRead(r, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ImageFile %q: %w", name, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ImageFile %q: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTemplateSize+1))
	if err != nil {
		return nil, fmt.Errorf("ImageFile %q: %w", name, err)
	}
	if len(b) > maxTemplateSize {
		return nil, fmt.Errorf("ImageFile %q: larger than %d bytes", name, maxTemplateSize)
	}
	return b, nil
}

// imageStamp identifies the content of the image files a render reads.
func imageStamp(dir string, names []string) (string, error) {
	h := sha256.New()
	for _, name := range names {
		b, err := readImageFile(dir, name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(b))
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// imageFileArgs returns the paths a template passes to ImageFile; each must
// be a string literal.
func imageFileArgs(t *template.Template) ([]string, error) {
	var out []string
	var bad error
	visit := func(n parse.Node) bool {
		c, ok := n.(*parse.CommandNode)
		if !ok {
			return true
		}
		for i, a := range c.Args {
			if f, ok := a.(*parse.FieldNode); ok && slices.Contains(f.Ident, "ImageFile") {
				if i != 0 || len(c.Args) != 2 {
					bad = fmt.Errorf("ImageFile takes one string literal: %s", c)
					return false
				}
				lit, ok := c.Args[1].(*parse.StringNode)
				if !ok {
					bad = fmt.Errorf("ImageFile takes one string literal, not %s", c.Args[1])
					return false
				}
				out = append(out, lit.Text)
			}
		}
		return true
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			inspectTemplate(tt.Tree.Root, visit)
		}
	}
	if bad != nil {
		return nil, bad
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// TemplateServer is the server as nodes reach it.
type TemplateServer struct {
	Address        string
	Port           int
	Secure         bool
	UpdateInterval int // seconds
	TLSPort        int // HTTPS port of the runtime overlay and heartbeats; 0: TLS off
}

// Template limits: a template source and its output are small files.
const (
	maxTemplateSize = 4 << 20
	maxRenderSize   = 64 << 20
)

// templateFuncs are the functions templates may call, as in DESIGN.md.
var templateFuncs = template.FuncMap{
	"join":      func(list []string, sep string) string { return strings.Join(list, sep) },
	"prefixlen": config.PrefixLen,
	"lower":     strings.ToLower,
	"upper":     strings.ToUpper,
	// account files: see accounts.go
	"mergelines":  mergeLines,
	"lockmissing": lockMissing,
	"file":        templateFile, // multifile.go
	"netfiles":    netFiles,     // netfiles.go
	"hostkeys":    hostKeyFiles, // hostkeys.go
}

// renderCtx is what one build renders templates with.
type renderCtx struct {
	data *TemplateData
	// shared identifies the inputs of templates that do not use .Node
	// (server fields and the nodes' hash): their output is the same for
	// every node and is rendered once per shared value.
	shared string
}

func newRenderCtx(snap *config.Snapshot, n *config.Node) (*renderCtx, error) {
	if snap == nil || snap.Server == nil || snap.Nodes == nil {
		return nil, errors.New("build: no configuration snapshot")
	}
	if n == nil {
		return nil, errors.New("build: no node")
	}
	s := snap.Server
	d := &TemplateData{
		Node:  n,
		Nodes: snap.Nodes.Public,
		Server: TemplateServer{
			Address:        s.Address,
			Port:           s.Port,
			Secure:         s.IsSecure(),
			UpdateInterval: int(s.UpdateInterval.Seconds()),
			TLSPort:        s.TLSPort(),
		},
	}
	return &renderCtx{data: d, shared: mustJSON(struct {
		Server    TemplateServer
		NodesHash string
	}{d.Server, snap.Nodes.Hash})}, nil
}

// renderCtx is newRenderCtx with the node's image, for ImageFile.
func (b *Builder) renderCtx(snap *config.Snapshot, n *config.Node) (*renderCtx, error) {
	rc, err := newRenderCtx(snap, n)
	if err == nil && n.Image != "" && checkName("image", n.Image) == nil {
		rc.data.imageDir = b.imageDir(n.Image)
	}
	if err == nil {
		rc.data.netStack = netrender.Resolve(n.NetworkStack, rc.data.imageDir)
		b.withKeys(rc, snap.Nodes) // hostkeys.go
	}
	return rc, err
}

// nodeInputs is everything a template's output can depend on besides its
// source: the node (with its asset key, which its JSON leaves out), the
// server fields and, for .Nodes, the hash of the whole node database.
func (rc *renderCtx) nodeInputs() string {
	return mustJSON(struct {
		Node     *config.Node
		AssetKey string
		Shared   string
		NetStack string
		Runtime  bool
		Keys     string
	}{rc.data.Node, rc.data.Node.AssetKey, rc.shared, rc.data.netStack, rc.data.runtime, rc.data.keysStamp})
}

func mustJSON(v any) string {
	j, err := json.Marshal(v)
	if err != nil { // cannot happen with these types
		panic(fmt.Sprintf("build: marshal template inputs: %v", err))
	}
	return string(j)
}

// parsedTemplate is a parsed overlay template.
type parsedTemplate struct {
	t          *template.Template
	key        [32]byte // name and source
	perNode    bool     // may depend on .Node (or its image)
	imageFiles []string // files of the node's image it reads (ImageFile)
	multiFile  bool     // calls file: its output is split (multifile.go)
}

// parse parses a template source; name (overlays/NAME/path.ww) appears in
// error messages, with the line. Parsed templates are cached by name and
// content.
func (b *Builder) parse(name string, src []byte) (*parsedTemplate, error) {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(src)
	var key [32]byte
	h.Sum(key[:0])

	b.tmplMu.Lock()
	pt := b.tmpls[key]
	b.tmplMu.Unlock()
	if pt != nil {
		return pt, nil
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(string(src))
	if err != nil {
		return nil, err
	}
	files, err := imageFileArgs(t)
	if err != nil {
		return nil, err
	}
	pt = &parsedTemplate{t: t, key: key, perNode: usesNode(t) || len(files) > 0, imageFiles: files,
		multiFile: slices.ContainsFunc(t.Templates(), func(tt *template.Template) bool { return tt.Tree != nil && callsFile(tt.Tree.Root) })}
	b.tmplMu.Lock()
	if len(b.tmpls) >= 4096 { // old versions pile up; start over
		clear(b.tmpls)
	}
	b.tmpls[key] = pt
	b.tmplMu.Unlock()
	return pt, nil
}

// execute renders pt. The output of a template that does not use .Node is
// remembered per shared inputs, so a /etc/hosts over all nodes is rendered
// once, not once per node.
func (b *Builder) execute(pt *parsedTemplate, rc *renderCtx) (out []byte, err error) {
	var memoKey [32]byte
	if !pt.perNode {
		h := sha256.New()
		h.Write(pt.key[:])
		h.Write([]byte(rc.shared))
		h.Sum(memoKey[:0])
		b.tmplMu.Lock()
		out, ok := b.outputs[memoKey]
		b.tmplMu.Unlock()
		if ok {
			return out, nil
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("template: %s: panic: %v", pt.t.Name(), r)
		}
	}()
	var buf bytes.Buffer
	if err := pt.t.Execute(&limitedWriter{w: &buf, n: maxRenderSize}, rc.data); err != nil {
		return nil, err
	}
	out = buf.Bytes()
	if !pt.perNode {
		b.tmplMu.Lock()
		if b.outputBytes+len(out) > maxMemoBytes || len(b.outputs) >= 4096 {
			clear(b.outputs)
			b.outputBytes = 0
		}
		b.outputs[memoKey] = out
		b.outputBytes += len(out)
		b.tmplMu.Unlock()
	}
	return out, nil
}

// maxMemoBytes bounds the remembered outputs of node-independent templates.
const maxMemoBytes = 64 << 20

type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("output larger than %d bytes", maxRenderSize)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// usesNode reports whether a template may depend on .Node. It is
// conservative: a field or variable path naming "Node", or dot or $ used as a
// value (printed, passed to a function or another template) count as use.
// A template without any of these renders the same for every node (e.g.
// /etc/hosts from {{range .Nodes}}…{{.Name}}…{{end}}).
func usesNode(t *template.Template) bool {
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil && nodeUses(tt.Tree.Root) {
			return true
		}
	}
	return false
}

func nodeUses(n parse.Node) bool {
	names := func(idents []string) bool {
		for _, id := range idents {
			if id == "Node" {
				return true
			}
		}
		return false
	}
	switch n := n.(type) {
	case nil:
		return false
	case *parse.ListNode:
		if n == nil {
			return false
		}
		for _, c := range n.Nodes {
			if nodeUses(c) {
				return true
			}
		}
		return false
	case *parse.ActionNode:
		return nodeUses(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return false
		}
		for _, c := range n.Cmds {
			if nodeUses(c) {
				return true
			}
		}
		return false
	case *parse.CommandNode:
		for _, a := range n.Args {
			if nodeUses(a) {
				return true
			}
		}
		return false
	case *parse.FieldNode:
		return names(n.Ident)
	case *parse.ChainNode:
		return names(n.Field) || nodeUses(n.Node)
	case *parse.VariableNode:
		// $ alone is the whole data; $.Node or $x.Node name it.
		return (len(n.Ident) == 1 && n.Ident[0] == "$") || names(n.Ident[1:])
	case *parse.DotNode:
		return true
	case *parse.IfNode:
		return nodeUses(n.Pipe) || nodeUses(n.List) || nodeUses(n.ElseList)
	case *parse.RangeNode:
		return nodeUses(n.Pipe) || nodeUses(n.List) || nodeUses(n.ElseList)
	case *parse.WithNode:
		return nodeUses(n.Pipe) || nodeUses(n.List) || nodeUses(n.ElseList)
	case *parse.TemplateNode:
		return nodeUses(n.Pipe)
	case *parse.TextNode, *parse.CommentNode, *parse.IdentifierNode, *parse.StringNode,
		*parse.NumberNode, *parse.BoolNode, *parse.NilNode, *parse.BreakNode, *parse.ContinueNode:
		return false
	default:
		return true // unknown node: assume the worst
	}
}

// tmplUse is what the templates of an overlay (set) use.
type tmplUse struct {
	perNode bool // some template may use .Node (or the node's image)
	shared  bool // some template does not
	// imageFiles are the files of the node's image that templates read
	// (ImageFile): their content is part of the node member's key.
	imageFiles []string
}

// templateUse classifies the templates of the overlay at dir (in the state
// fp); remembered per overlay fingerprint. A template that does not parse
// counts as per node (building that member reports the error); one that
// cannot be read (removed since) counts as both, not remembered.
func (b *Builder) templateUse(name, dir string, fp fingerprint) tmplUse {
	if len(fp.templates) == 0 {
		return tmplUse{}
	}
	b.tmplMu.Lock()
	u, ok := b.tmplUses[fp.hash]
	b.tmplMu.Unlock()
	if ok {
		return u
	}
	both := tmplUse{perNode: true, shared: true}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return both
	}
	defer r.Close()
	for _, out := range fp.templates {
		rel := out + templateSuffix
		src, err := readSmall(func() (*os.File, error) { return openRead(r, rel) }, rel)
		if err != nil {
			return both
		}
		pt, err := b.parse(path.Join("overlays", name, rel), src)
		switch {
		case err != nil:
			u.perNode = true
		case pt.perNode:
			u.perNode = true
			u.imageFiles = append(u.imageFiles, pt.imageFiles...)
		default:
			u.shared = true
		}
	}
	slices.Sort(u.imageFiles)
	u.imageFiles = slices.Compact(u.imageFiles)
	b.tmplMu.Lock()
	if len(b.tmplUses) >= 4096 {
		clear(b.tmplUses)
	}
	b.tmplUses[fp.hash] = u
	b.tmplMu.Unlock()
	return u
}
