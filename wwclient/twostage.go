package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"github.com/wwcluster/ww/wwclient/agent"
	"github.com/wwcluster/ww/wwclient/kmod"
	"github.com/wwcluster/ww/wwclient/nodeconf"
	"github.com/wwcluster/ww/wwclient/stage2"
)

// defaultAssetTagFile is where the bootstrap reads the asset key (as the
// agent's --asset-tag-file default).
const defaultAssetTagFile = "/sys/class/dmi/id/chassis_asset_tag"

// imageLoader is the bootstrap's two-stage image loader: downloads over a
// plain client, progress posts over the agent's (a privileged source port
// in secure mode), the NIC driver loaded with kmod, log lines on the
// console.
func imageLoader() *stage2.Loader {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo})).With("prog", "wwinit")
	return &stage2.Loader{
		Log: log,
		Clients: func(eff nodeconf.Effective) (*http.Client, *http.Client) {
			lo, hi := eff.Config.SourcePorts()
			return stage2.NewDownloadClient(stage2.DefaultParallel),
				agent.NewHTTPClient(agent.ClientOptions{Secure: eff.Config.Secure, PortMin: lo, PortMax: hi})
		},
		AssetKey: func(eff nodeconf.Effective) string { return assetKey(eff.Config.AssetKey, defaultAssetTagFile) },
		LoadDrivers: func(ctx context.Context) error {
			_, err := kmod.LoadNetworkDrivers(ctx, kmod.Options{Logger: log})
			return err
		},
	}
}
