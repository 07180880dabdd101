package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/image"
	"github.com/wwcluster/ww/server/status"
)

// warnRestartNeeded logs settings that changed on reload but only take
// effect on restart.
func warnRestartNeeded(log *slog.Logger, was, now *config.Server, listenOverridden bool) {
	if was.Listen != now.Listen && !listenOverridden {
		log.Warn("listen changed in wwserver.toml; restart wwserver to apply", "was", was.Listen, "now", now.Listen)
	}
	if was.DHCP.Enabled != now.DHCP.Enabled {
		log.Warn("dhcp.enabled changed; restart wwserver to apply", "now", now.DHCP.Enabled)
	}
	if was.DHCP.AnswerRouterSolicitations != now.DHCP.AnswerRouterSolicitations {
		log.Warn("dhcp.answer_router_solicitations changed; restart wwserver to apply", "now", now.DHCP.AnswerRouterSolicitations)
	}
	if was.TLS != now.TLS {
		log.Warn("[tls] changed; restart wwserver to apply", "enabled", now.TLS.Enabled, "listen", now.TLS.Listen)
	}
	if was.TFTP.Enabled != now.TFTP.Enabled {
		log.Warn("tftp.enabled changed; restart wwserver to apply", "now", now.TFTP.Enabled)
	}
}

// PrepareImages makes images/ root-only when every local user can reach
// it (image trees hold setuid-root programs), and removes what killed
// imports left.
func PrepareImages(root string, log *slog.Logger) {
	if why, err := image.ImagesExposure(root); err != nil {
		log.Warn("cannot check the permissions of images/", "err", err)
	} else if why != "" {
		old, changed, err := image.SecureImagesDir(root)
		switch {
		case err != nil:
			log.Warn("images/ is reachable by every local user and could not be made root-only", "problem", why, "err", err)
		case changed:
			log.Warn("images/ was reachable by every local user: made it root-only", "old_mode", fmt.Sprintf("%04o", old))
		default:
			log.Warn("images/ is reachable by a user other than root", "problem", why)
		}
	}
	removed, err := image.CleanLeftovers(root)
	for _, r := range removed {
		log.Info("removed what a killed image import or delete left", "path", r)
	}
	if err != nil {
		log.Warn("cannot remove what killed image imports left", "err", err)
	}
}

// pruneLoop removes unused build cache files and aged-out status entries
// now and then.
func pruneLoop(ctx context.Context, b *artifact.Builder, st *status.Store, cfg *config.Store, log *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := b.Prune(artifact.DefaultPruneAge); err != nil {
				log.Warn("prune build cache", "err", err)
			}
			if removed, unknown := st.Expire(cfg.Current().Nodes); removed+unknown > 0 {
				log.Info("status entries aged out", "removed_nodes", removed, "unknown_macs", unknown)
			}
		}
	}
}
