package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// What the packages put where (the same on Debian and Rocky, merged /usr).
const (
	unitPath        = "/usr/lib/systemd/system/wwserver.service"
	nodeClient      = "/usr/lib/wwserver/wwclient" // the nodes' wwclient, found by `wwserver init`
	nodeClientARM64 = "/usr/lib/wwserver/arm64/wwclient"
	serverBinary    = "/usr/sbin/wwserver"
	clientBinary    = "/usr/sbin/wwclient"
	homepage        = "https://github.com/wwcluster/ww"
	serverSummary   = "cluster node provisioning server (PXE, iPXE, HTTP, DHCP, TFTP)"
)

// serverDepends are the boot loaders wwserver serves, per format: Debian's
// ipxe (/usr/lib/ipxe, the default tftp.dir) and signed shim + GRUB for
// Secure Boot nodes; Rocky's ipxe-bootimgs-x86 installs /usr/share/ipxe
// with other names (README: Install from packages). Rocky's names are
// not tested here. procps: the unit's
// /bin/kill on Debian (util-linux has it on Rocky).
var serverDepends = map[string]struct{ depends, recommends []string }{
	"deb": {[]string{"ipxe", "procps"}, []string{"shim-signed", "grub-efi-amd64-signed"}},
	"rpm": {[]string{"ipxe-bootimgs-x86"}, []string{"shim-x64", "grub2-efi-x64"}},
}

func wwserverInfo(o options, format string, man []string) *nfpm.Info {
	c := files.Contents{
		file(filepath.Join(o.bin, "wwserver"), serverBinary, 0o755, o.mtime),
		file(filepath.Join(o.bin, "wwclient-amd64"), nodeClient, 0o755, o.mtime),
		// for arm64 nodes' overlays (README: arm64 nodes), as make build's bin/arm64/wwclient
		file(filepath.Join(o.bin, "wwclient-arm64"), nodeClientARM64, 0o755, o.mtime),
		file(filepath.Join(o.src, "server/systemd/wwserver.service"), unitPath, 0o644, o.mtime),
		file(filepath.Join(o.docs, "completions/wwserver.bash"), "/usr/share/bash-completion/completions/wwserver", 0o644, o.mtime),
		file(filepath.Join(o.docs, "completions/wwserver.fish"), "/usr/share/fish/vendor_completions.d/wwserver.fish", 0o644, o.mtime),
	}
	zsh := map[string]string{"deb": "/usr/share/zsh/vendor-completions/_wwserver", "rpm": "/usr/share/zsh/site-functions/_wwserver"}
	c = append(c, file(filepath.Join(o.docs, "completions/_wwserver"), zsh[format], 0o644, o.mtime))
	for _, m := range man {
		c = append(c, file(m, "/usr/share/man/man8/"+filepath.Base(m), 0o644, o.mtime))
	}
	c = append(c, docs(o, format, "wwserver", "README.md", "DESIGN.md")...)
	if format == "rpm" {
		// rpm removes only the directories a package owns (dpkg those it
		// created); zsh and fish may be absent, so their completion
		// directories are owned too, as Fedora's guidelines allow.
		for _, d := range []string{"/usr/lib/wwserver", "/usr/lib/wwserver/arm64", "/usr/share/doc/wwserver", "/usr/share/fish",
			"/usr/share/fish/vendor_completions.d", "/usr/share/zsh", "/usr/share/zsh/site-functions"} {
			c = append(c, &files.Content{Destination: d, Type: files.TypeDir,
				FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755, MTime: o.mtime}})
		}
	}
	scripts := filepath.Join(o.src, "tools/pkg/scripts")
	info := baseInfo(o, "wwserver", "amd64", serverSummary, `wwserver boots disk-less cluster nodes over PXE from one served tree of plain
files (/var/lib/wwserver): built-in DHCP and TFTP, iPXE scripts, kernels, node
images and overlays over HTTP, and a status view of every node. Start with
"wwserver init /var/lib/wwserver", then "systemctl enable --now wwserver".`)
	info.Depends = serverDepends[format].depends
	info.Recommends = serverDepends[format].recommends
	info.Contents = c
	info.Scripts = nfpm.Scripts{
		PostInstall: filepath.Join(scripts, "wwserver.postinstall"),
		PreRemove:   filepath.Join(scripts, "wwserver.preremove"),
		PostRemove:  filepath.Join(scripts, "wwserver.postremove"),
	}
	return info
}

func wwclientInfo(o options, format, arch string) *nfpm.Info {
	info := baseInfo(o, "wwclient", arch, "node agent and /init of wwserver-provisioned cluster nodes",
		`wwclient is the node side of wwserver: the /init bootstrap of a disk-less node
and the agent that keeps its runtime overlay in sync. For node images built
outside the served tree; "wwserver init" installs it in the system overlay.`)
	info.Contents = append(files.Contents{file(filepath.Join(o.bin, "wwclient-"+arch), clientBinary, 0o755, o.mtime)},
		docs(o, format, "wwclient", "README.md")...)
	if format == "rpm" {
		info.Contents = append(info.Contents, &files.Content{Destination: "/usr/share/doc/wwclient", Type: files.TypeDir,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755, MTime: o.mtime}})
	}
	return info
}

func baseInfo(o options, name, arch, summary, long string) *nfpm.Info {
	return &nfpm.Info{
		Name:          name,
		Arch:          arch,
		Platform:      "linux",
		VersionSchema: "none", // packageVersion made it valid for both formats
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    o.maintainer,
		Vendor:        "wwcluster",
		Homepage:      homepage,
		Description:   summary + "\n" + long,
		MTime:         o.mtime,
		Overridables:  nfpm.Overridables{Umask: 0o022},
	}
}

func file(src, dst string, mode os.FileMode, mtime time.Time) *files.Content {
	return &files.Content{Source: src, Destination: dst,
		FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: mtime}}
}

// docs are the package's documentation files (%doc in the .rpm; nfpm
// leaves files of that type out of a .deb, so they are plain files there).
func docs(o options, format, pkg string, names ...string) files.Contents {
	var c files.Contents
	for _, n := range names {
		d := file(filepath.Join(o.src, n), "/usr/share/doc/"+pkg+"/"+n, 0o644, o.mtime)
		if format == "rpm" {
			d.Type = files.TypeRPMDoc
		}
		c = append(c, d)
	}
	return c
}

var (
	tagged   = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)
	untagged = regexp.MustCompile(`^([0-9a-f]{7,40})(-dirty)?$`)
)

// packageVersion turns `git describe --tags --always --dirty` into a
// version dpkg and rpm both order by age: v1.2.3 → 1.2.3, v1.2.3-4-gabc →
// 1.2.3+4.gabc (after 1.2.3), and without a tag abc → 0~gitYYYYMMDDhhmmss.abc
// (ordered by commit time; ~ sorts before any release). -dirty → .dirty.
func packageVersion(describe string, commit time.Time) (string, error) {
	if m := tagged.FindStringSubmatch(describe); m != nil {
		v := m[1]
		if m[2] != "" {
			v += "+" + m[2] + ".g" + m[3]
		}
		return v + strings.Replace(m[4], "-", ".", 1), nil
	}
	if m := untagged.FindStringSubmatch(describe); m != nil {
		return "0~git" + commit.UTC().Format("20060102150405") + "." + m[1] + strings.Replace(m[2], "-", ".", 1), nil
	}
	return "", fmt.Errorf("--version %q: want git describe output (vX.Y.Z[-N-gHASH][-dirty] or HASH[-dirty])", describe)
}

// gzipManPages compresses every *.8 of dir into out (as Debian policy wants
// manual pages), without name or time in the gzip header, and returns the
// paths written, sorted.
func gzipManPages(dir, out string) ([]string, error) {
	pages, err := filepath.Glob(filepath.Join(dir, "*.8"))
	if err != nil || len(pages) == 0 {
		return nil, fmt.Errorf("no man pages in %s (run wwserver __gendocs): %v", dir, err)
	}
	sort.Strings(pages)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, p := range pages {
		dst := filepath.Join(out, filepath.Base(p)+".gz")
		if err := gzipFile(p, dst); err != nil {
			return nil, fmt.Errorf("man page %s: %w", p, err)
		}
		written = append(written, dst)
	}
	return written, nil
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
