// Command pkg builds the wwserver and wwclient .deb and .rpm packages with
// nfpm (github.com/goreleaser/nfpm/v2, as a library): make packages.
//
//	pkg --bin DIR --docs DIR --out DIR --version DESCRIBE --time UNIX
//
// DIR of --bin holds wwserver (amd64), wwclient-amd64 and wwclient-arm64,
// all static; --docs is what `wwserver __gendocs` wrote (man8/,
// completions/). --version is `git describe --tags --always --dirty`,
// --time the commit time (package version of an untagged build, and every
// file's mtime, so two builds of one commit are the same bytes).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// options are the command's flags.
type options struct {
	bin, docs, src, out string
	describe            string
	mtime               time.Time
	maintainer          string
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pkg:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var o options
	var unix int64
	fs := flag.NewFlagSet("pkg", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "", "directory with wwserver, wwclient-amd64, wwclient-arm64")
	fs.StringVar(&o.docs, "docs", "", "directory `wwserver __gendocs` wrote (man8/, completions/)")
	fs.StringVar(&o.src, "src", ".", "repository root (unit file, scripts, README)")
	fs.StringVar(&o.out, "out", "", "directory for the packages")
	fs.StringVar(&o.describe, "version", "", "git describe --tags --always --dirty")
	fs.Int64Var(&unix, "time", 0, "commit time, seconds since the epoch")
	fs.StringVar(&o.maintainer, "maintainer", "wwcluster maintainers <root@localhost>", "Maintainer / Packager field")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.bin == "" || o.docs == "" || o.out == "" || o.describe == "" || unix <= 0 {
		return errors.New("--bin, --docs, --out, --version and --time are required")
	}
	o.mtime = time.Unix(unix, 0).UTC()
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	version, err := packageVersion(o.describe, o.mtime)
	if err != nil {
		return err
	}
	man, err := gzipManPages(filepath.Join(o.docs, "man8"), filepath.Join(o.out, ".man8"))
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(o.out, ".man8"))
	packagers := map[string]nfpm.Packager{"deb": deb.Default, "rpm": rpm.DefaultRPM}
	for _, format := range []string{"deb", "rpm"} {
		infos := []*nfpm.Info{wwserverInfo(o, format, man)}
		for _, arch := range []string{"amd64", "arm64"} {
			infos = append(infos, wwclientInfo(o, format, arch))
		}
		for _, info := range infos {
			info.Version = version
			if err := write(packagers[format], format, info, o.out); err != nil {
				return err
			}
		}
	}
	return nil
}

// write builds one package into dir under its conventional file name
// (wwserver_VERSION_amd64.deb, wwserver-VERSION-1.x86_64.rpm), through a
// temporary file renamed into place.
func write(p nfpm.Packager, format string, info *nfpm.Info, dir string) error {
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return fmt.Errorf("%s %s: %w", info.Name, format, err)
	}
	target := filepath.Join(dir, p.ConventionalFileName(info))
	f, err := os.CreateTemp(dir, ".pkg-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	info.Target = target
	if err := p.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("%s %s %s: %w", info.Name, info.Arch, format, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return err
	}
	fmt.Println(target)
	return nil
}
