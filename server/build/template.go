package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/wwcluster/ww/server/config"
)

// TemplateData is what overlay templates (*.ww) see as ".".
type TemplateData struct {
	Node   *config.Node         // the node the overlay is rendered for
	Nodes  []*config.PublicNode // all nodes, sorted by name, without their asset keys
	Server TemplateServer
}

// TemplateServer is the server as nodes reach it.
type TemplateServer struct {
	Address        string
	Port           int
	Secure         bool
	UpdateInterval int // seconds
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
		},
	}
	return &renderCtx{data: d, shared: mustJSON(struct {
		Server    TemplateServer
		NodesHash string
	}{d.Server, snap.Nodes.Hash})}, nil
}

// nodeInputs is everything a template's output can depend on besides its
// source: the node (with its asset key, which its JSON leaves out), the
// server fields and, for .Nodes, the hash of the whole node database.
func (rc *renderCtx) nodeInputs() string {
	return mustJSON(struct {
		Node     *config.Node
		AssetKey string
		Shared   string
	}{rc.data.Node, rc.data.Node.AssetKey, rc.shared})
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
	t       *template.Template
	key     [32]byte // name and source
	perNode bool     // may depend on .Node
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
	pt = &parsedTemplate{t: t, key: key, perNode: usesNode(t)}
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
	perNode bool // some template may use .Node
	shared  bool // some template does not
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
		if err != nil || pt.perNode {
			u.perNode = true
		} else {
			u.shared = true
		}
	}
	b.tmplMu.Lock()
	if len(b.tmplUses) >= 4096 {
		clear(b.tmplUses)
	}
	b.tmplUses[fp.hash] = u
	b.tmplMu.Unlock()
	return u
}
