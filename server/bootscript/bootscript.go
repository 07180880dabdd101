// Package bootscript renders boot plans (server/bootplan) in a boot
// loader's script language: ipxe.go writes iPXE scripts from the built-in
// templates or the admin's ROOT/ipxe/NAME.ipxe; grub.go writes GRUB
// configs (the per-node config, the unknown-node one and the bootstrap
// /grub/grub.cfg) from built-in templates. Both implement Renderer and
// share the render cache (cache.go).
package bootscript

import (
	"errors"
	"io"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/config"
)

// ErrNoTemplate marks a node's template override that does not exist.
var ErrNoTemplate = errors.New("not found")

// Request is one node asking for its boot script.
type Request struct {
	Snap *config.Snapshot
	Node *config.Node
	MAC  string // the MAC booting, lower-case with colons
	// Servers are the live servers as HOST:PORT, this one first
	// (bootplan.Servers); at least this one.
	Servers []string
	// ImageDigest, for a two-stage node (boot = "twostage"), is the sha256
	// of its image index: the plan becomes a two-stage one.
	ImageDigest string
	// Via is how a GRUB config's files are fetched (ViaTFTP, the default,
	// or ViaHTTP); iPXE ignores it.
	Via string
	// ImageArch is the architecture of the node's image (its kernel's;
	// "" unknown: no check in the script).
	ImageArch string
}

// plan is req's boot plan.
func (req Request) plan() *bootplan.Plan {
	p := bootplan.New(req.Snap.Server, req.Node, req.MAC, others(req.Servers))
	if req.ImageDigest != "" && req.Node.TwoStage() {
		p.TwoStage(req.ImageDigest)
	}
	p.Arch = req.ImageArch
	return p
}

// others are the servers besides this one (the first).
func others(servers []string) []string {
	if len(servers) == 0 {
		return nil
	}
	return servers[1:]
}

// Renderer writes boot plans as one boot loader's scripts.
type Renderer interface {
	// RenderPlan writes the script of plan p and returns what to record
	// as sent.
	RenderPlan(w io.Writer, p *bootplan.Plan) (sent string, err error)
	// Script is RenderPlan's output for req's plan, cached per config
	// snapshot and server list; the caller must not modify it.
	Script(req Request) (script []byte, sent string, err error)
	// RenderUnknown writes the script for a MAC no node has.
	RenderUnknown(w io.Writer, snap *config.Snapshot, mac string) error
}

var _ Renderer = (*IPXE)(nil)
