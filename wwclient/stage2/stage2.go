package stage2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
	"github.com/wwcluster/ww/wwclient/nodeconf"
)

// DefaultMemInfo is where MemAvailable is read.
const DefaultMemInfo = "/proc/meminfo"

// Loader loads the image of a two-stage boot into the new root: it is the
// bootstrap's ImageLoader.
type Loader struct {
	Log *slog.Logger
	// Clients returns the HTTP client for the downloads and the one for
	// progress posts (secure mode: from a privileged source port).
	Clients func(eff nodeconf.Effective) (download, post *http.Client)
	// AssetKey is the node's asset key ("" for none), sent with progress
	// posts as with heartbeats.
	AssetKey func(eff nodeconf.Effective) string
	// LoadDrivers loads the NIC's kernel module (package kmod).
	LoadDrivers func(ctx context.Context) error
	MemInfo     string // default /proc/meminfo
	Parallel    int    // chunks fetched at once (default DefaultParallel)
}

// LoadImage brings the boot NIC up, fetches the image wwimage= names from
// the servers of wwserver= and unpacks it into dir, then puts the NIC back
// as it found it. say prints a console line.
func (l *Loader) LoadImage(ctx context.Context, eff nodeconf.Effective, dir string, say func(format string, args ...any)) error {
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	servers, err := nodeconf.ServerURLs(eff.Server)
	if err != nil {
		return fmt.Errorf("wwserver=: %w", err)
	}
	mac := eff.WWID
	if mac == "" {
		mac = eff.MAC
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("no usable boot MAC (wwid=%q): %w", mac, err)
	}
	no := NetOptions{HWAddr: hw, Log: log, LoadDrivers: l.LoadDrivers}
	if p, ok := eff.Config.Primary(); ok && (p.HWAddr == "" || p.HWAddr == mac) && p.IPAddr != "" {
		bits := 24
		if p.Netmask != "" {
			if b, err := nodeconf.PrefixLen(p.Netmask); err == nil {
				bits = b
			}
		}
		no.Static = &net.IPNet{IP: net.ParseIP(p.IPAddr).To4(), Mask: net.CIDRMask(bits, 32)}
		if p.Gateway != "" {
			no.Gateway = net.ParseIP(p.Gateway).To4()
		}
	}
	say("network: bringing up the NIC with hwaddr %s", mac)
	n, err := Up(ctx, no)
	if err != nil {
		return err
	}
	defer n.Down()
	say("network: %s %s (%s)", n.Name, n.Addr, n.Source)

	download, post := http.DefaultClient, http.DefaultClient
	if l.Clients != nil {
		download, post = l.Clients(eff)
	}
	f, err := NewFetcher(FetchOptions{Servers: servers, MAC: mac, Digest: eff.Image, Client: download, Parallel: l.Parallel, Log: log})
	if err != nil {
		return err
	}
	key := ""
	if l.AssetKey != nil {
		key = l.AssetKey(eff)
	}
	return l.Load(ctx, f, f.NewReporter(post, key, 0), dir, say)
}

// Load fetches the index, checks that the image fits, and streams it into
// dir, reporting progress through rep.
func (l *Loader) Load(ctx context.Context, f *Fetcher, rep *Reporter, dir string, say func(format string, args ...any)) error {
	ix, err := f.Index(ctx)
	if err != nil {
		return err
	}
	say("image %s: %s in %d chunks, %s to download, from %s", f.o.Digest[:12], gib(ix.Size), len(ix.Chunks),
		gib(ix.CompressedSize()), f.host(int(f.current.Load())))
	if err := l.checkFits(ix, dir, f.o.Parallel); err != nil {
		say("ERROR: %v", err)
		reason := ReasonImageFailed
		if errors.Is(err, ErrTooBig) {
			reason = ReasonNoMemory
		}
		if perr := rep.Final(ctx, Report{Total: ix.Size, Error: reason, Message: err.Error()}); perr != nil {
			f.o.Log.Warn("progress post", "err", perr)
		}
		return err
	}

	start := time.Now()
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep.Run(rctx)
	}()
	stream := f.Stream(ctx, ix)
	tenth := int64(0)
	stream.Progress = func(done, total int64) {
		rep.Update(done, total)
		if p := percent(done, total) / 10; p > tenth && p < 10 {
			tenth = p
			say("image: %d%% (%s of %s)", p*10, gib(done), gib(total))
		}
	}
	res, err := Extract(dir, stream)
	stream.Close()
	stop()
	wg.Wait()
	if err != nil {
		if perr := rep.Final(ctx, Report{Done: stream.Done(), Total: ix.Size, Error: ReasonImageFailed, Message: err.Error()}); perr != nil {
			f.o.Log.Warn("progress post", "err", perr)
		}
		return err
	}
	if perr := rep.Final(ctx, Report{Done: ix.Size, Total: ix.Size}); perr != nil {
		f.o.Log.Warn("progress post", "err", perr)
	}
	d := time.Since(start)
	say("image unpacked: %d files, %d directories, %d symlinks, %s in %s (%.0f MiB/s)", res.Files, res.Dirs, res.Symlinks,
		gib(ix.Size), d.Round(100*time.Millisecond), float64(ix.Size)/(1<<20)/max(d.Seconds(), 0.001))
	return nil
}

// checkFits compares the image with MemAvailable and the tmpfs' free space.
func (l *Loader) checkFits(ix *chunkimage.Index, dir string, parallel int) error {
	p := l.MemInfo
	if p == "" {
		p = DefaultMemInfo
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("memory check: %w", err)
	}
	avail, err := MemAvailable(data)
	if err != nil {
		return fmt.Errorf("memory check: %w", err)
	}
	free := int64(-1)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Blocks > 0 {
		free = int64(st.Bavail) * st.Bsize
	}
	return CheckFits(ix, avail, free, parallel)
}
