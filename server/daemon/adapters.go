package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp"
	"github.com/wwcluster/ww/server/health"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/provision"
)

// buildHealth is the component builds report under in /healthz.
const buildHealth = "build"

// dhcpLeases gives provision the DHCP leases (secure mode's source check).
type dhcpLeases struct{ *dhcp.Server }

// HasLease scans a copy of the table: only requests from an address the
// node does not hold get here.
func (l dhcpLeases) HasLease(mac string) bool {
	now := time.Now()
	for _, ls := range l.Leases() {
		if ls.MAC == mac && ls.State != dhcp.StateDeclined && ls.Active(now) {
			return true
		}
	}
	return false
}

// builderAdapter gives provision the builder; build's not-found errors
// become provision's (404 instead of 500). Every other outcome goes to
// health: a failing build (a full disk) degrades /healthz until one works.
type builderAdapter struct {
	b      *artifact.Builder
	health health.Reporter
	boot   *bootWarnings // may be nil
}

func (a builderAdapter) Kernel(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	art, err := a.b.Kernel(ctx, s, n)
	if err == nil && a.boot != nil {
		a.boot.serving(n, art)
	}
	return a.artifact(art, err)
}

// bootWarnings logs and lists the images nodes cannot boot.
type bootWarnings struct {
	checker *artifact.BootChecker
	log     *slog.Logger
	limit   *health.Limiter // serving a known non-kernel: once a minute per kernel

	mu     sync.Mutex
	logged map[string]bool // problems already logged
}

func newBootWarnings(c *artifact.BootChecker, log *slog.Logger) *bootWarnings {
	return &bootWarnings{checker: c, log: log, limit: health.NewLimiter(health.DefaultLogEvery, nil), logged: map[string]bool{}}
}

// check returns one line per image of snap that nodes cannot boot, naming
// the nodes, and logs each problem the first time it is seen.
func (w *bootWarnings) check(snap *config.Snapshot) []string {
	probs := w.checker.Problems(snap)
	lines := make([]string, 0, len(probs))
	now := make(map[string]bool, len(probs))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range probs {
		names := make([]string, len(p.Nodes))
		for i, n := range p.Nodes {
			names[i] = n.Name
		}
		nodes := hostlist.Compress(names)
		plural := "s"
		if len(names) == 1 {
			plural = ""
		}
		lines = append(lines, fmt.Sprintf("%d node%s cannot boot (%s): %v", len(names), plural, nodes, p.Err))
		key := p.Image + "\x00" + p.Kernel + "\x00" + p.Err.Error()
		now[key] = true
		if !w.logged[key] {
			w.log.Warn("nodes cannot boot this image; see wwserver check", "image", p.Image, "nodes", nodes, "count", len(names), "err", p.Err)
		}
	}
	w.logged = now
	return lines
}

// serving logs (once a minute per kernel) when a node is sent a kernel
// that check found is not one.
func (w *bootWarnings) serving(n *config.Node, art *artifact.Artifact) {
	if w.checker.IsBad(art.ETag) && w.limit.Allow(art.ETag) {
		w.log.Warn("sending a kernel that is not a Linux kernel image; the node will not boot", "node", n.Name, "image", n.Image, "kernel", art.Name)
	}
}

func (a builderAdapter) Image(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.Image(ctx, s, n))
}

func (a builderAdapter) SystemOverlay(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.SystemOverlay(ctx, s, n))
}

func (a builderAdapter) RuntimeOverlay(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.RuntimeOverlay(ctx, s, n))
}

// ImageIndex, KernelModules and Chunk: provision.TwoStageBuilder.
func (a builderAdapter) ImageIndex(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.ImageIndex, error) {
	ix, err := a.b.ImageIndex(ctx, s, n)
	if _, err := a.artifact(nil, err); err != nil {
		return nil, err
	}
	return &provision.ImageIndex{Digest: ix.Digest, Data: ix.Data, ModTime: ix.ModTime}, nil
}

func (a builderAdapter) KernelModules(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.KernelModules(ctx, s, n))
}

func (a builderAdapter) Chunk(digest string) (*provision.Artifact, error) {
	art, err := a.b.Chunk(digest)
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", provision.ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return &provision.Artifact{Name: art.Name, ETag: art.ETag, Size: art.Size, ModTime: art.ModTime, Open: art.Open}, nil
}

func (a builderAdapter) artifact(art *artifact.Artifact, err error) (*provision.Artifact, error) {
	if err != nil {
		if errors.Is(err, artifact.ErrNotFound) || errors.Is(err, artifact.ErrTemplate) || errors.Is(err, artifact.ErrInvalidName) ||
			errors.Is(err, context.Canceled) {
			// The node's config or a client, not the server: no health change.
			if errors.Is(err, artifact.ErrNotFound) {
				return nil, fmt.Errorf("%w: %w", provision.ErrNotFound, err)
			}
			return nil, err
		}
		if a.health != nil {
			a.health.Report(buildHealth, err)
		}
		return nil, err
	}
	if a.health != nil {
		a.health.Report(buildHealth, nil)
	}
	if art == nil { // ImageIndex: only the error mapping and health
		return nil, nil
	}
	return &provision.Artifact{Name: art.Name, ETag: art.ETag, Size: art.Size, ModTime: art.ModTime, Open: art.Open}, nil
}

// ImageArch: provision.ArchBuilder (the scripts' architecture check).
func (a builderAdapter) ImageArch(n *config.Node) (string, error) { return a.b.ImageArch(n) }
