package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
)

// Info describes one image of the tree.
type Info struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`   // bytes of regular files (hard links once)
	Files  int64  `json:"files"`  // entries of any type
	Kernel string `json:"kernel"` // what a node boots by default; "" when none
	// Arch is the CPU architecture of the image (GOARCH names: amd64,
	// arm64): its kernel's, else what its import source said; "" unknown.
	Arch  string   `json:"arch"`
	Nodes []string `json:"nodes"` // nodes that use it
	Meta  *Meta    `json:"import,omitempty"`
}

// List walks every images/NAME/rootfs. nodes may be nil (no usage shown).
func List(tree string, nodes *config.Nodes) ([]Info, error) {
	ents, err := os.ReadDir(filepath.Join(tree, "images"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(tree, "images", e.Name())
		rootfs := filepath.Join(dir, "rootfs")
		if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
			continue
		}
		info := Info{Name: e.Name(), Nodes: Users(nodes, e.Name())}
		if info.Size, info.Files, err = usage(rootfs); err != nil {
			return nil, fmt.Errorf("image %s: %w", e.Name(), err)
		}
		if info.Kernel, err = artifact.NewestKernel(rootfs); err != nil {
			return nil, fmt.Errorf("image %s: %w", e.Name(), err)
		}
		if data, err := os.ReadFile(filepath.Join(dir, MetaFile)); err == nil {
			var m Meta
			if json.Unmarshal(data, &m) == nil {
				info.Meta = &m
			}
		}
		info.Arch = imageArch(rootfs, info.Kernel, info.Meta)
		out = append(out, info)
	}
	return out, nil
}

// Users are the nodes whose image is name, sorted.
func Users(nodes *config.Nodes, name string) []string {
	var users []string
	if nodes == nil {
		return nil
	}
	for _, n := range nodes.List {
		if n.Image == name {
			users = append(users, n.Name)
		}
	}
	sort.Strings(users)
	return users
}

func usage(rootfs string) (size, files int64, err error) {
	seen := map[devIno]bool{}
	err = filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == rootfs {
			return nil
		}
		files++
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if k, ok := statT(fi); ok {
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		size += fi.Size()
		return nil
	})
	return size, files, err
}

// Delete removes images/NAME. It refuses while nodes use the image unless
// force is set, and while an import or exec of it runs.
func Delete(tree, name string, nodes *config.Nodes, force bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	dir := filepath.Join(tree, "images", name)
	if _, err := os.Stat(filepath.Join(dir, "rootfs")); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	if users := Users(nodes, name); len(users) > 0 && !force {
		return fmt.Errorf("image %s is used by %d node(s): %s (change their image first, or --force)",
			name, len(users), strings.Join(users, ","))
	}
	lock, err := lockImage(dir, false)
	if err != nil {
		return err
	}
	defer lock.Close()
	// Rename first, so a reader never sees a half-deleted tree.
	gone := filepath.Join(tree, "images", "."+name+".deleted")
	_ = os.RemoveAll(gone)
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("delete image %s: %w", name, err)
	}
	return os.RemoveAll(gone)
}

// WriteList prints images as a table: size, files, the kernel nodes boot,
// the nodes that use each (a hostlist) and where it was imported from.
func WriteList(w io.Writer, infos []Info) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tARCH\tSIZE\tFILES\tKERNEL\tNODES\tSOURCE")
	for _, i := range infos {
		kernel, users, src, arch := "(none)", "-", "-", "?"
		if i.Arch != "" {
			arch = i.Arch
		}
		if i.Kernel != "" {
			kernel = filepath.Base(i.Kernel)
		}
		if len(i.Nodes) > 0 {
			users = hostlist.Compress(i.Nodes)
		}
		if i.Meta != nil {
			src = i.Meta.Source
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f MiB\t%d\t%s\t%s\t%s\n", i.Name, arch, float64(i.Size)/(1<<20), i.Files, kernel, users, src)
	}
	return tw.Flush()
}

// imageArch is the architecture of the image at rootfs: its kernel's
// (kernel is the rootfs path NewestKernel found, read inside the rootfs
// only), else meta's (the import source's config); "" unknown.
func imageArch(rootfs, kernel string, meta *Meta) string {
	if kernel != "" {
		if root, err := os.OpenRoot(rootfs); err == nil {
			defer root.Close()
			rel, err := filepath.Rel(rootfs, kernel)
			if err != nil || !filepath.IsLocal(rel) {
				rel = kernel
			}
			if f, err := root.Open(rel); err == nil {
				defer f.Close()
				if arch, err := artifact.KernelArch(f); err == nil && arch != "" {
					return arch
				}
			}
		}
	}
	if meta != nil {
		return meta.Architecture
	}
	return ""
}
