// Package scaffold is `wwserver init`: it writes a complete, commented
// example served tree. The tree's text files are real files embedded from
// tree/ (*.toml are text/template, filled with the server address, listen
// address and example node addresses); the overlays come from the
// overlays package; the image is copied from a directory (like cp -a) or
// is a placeholder.
package scaffold

import (
	"bytes"
	"debug/elf"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/image"
	"github.com/wwcluster/ww/server/tlscert"
)

// Image is the image init creates; nodes.toml's default profile uses it.
const Image = "default"

// treeFS holds the example tree's text files, rooted at "tree".
//
//go:embed all:tree
var treeFS embed.FS

// Options are what init writes where.
type Options struct {
	Dir       string // the tree to write
	WWClient  string // wwclient binary ("": next to the running binary)
	ImageFrom string // root filesystem to copy ("": a placeholder)
	Address   string // IPv4 nodes reach the server at ("": guessed)
	Listen    string // HTTP listen address
	Force     bool   // write into a non-empty Dir
}

// Result is what Write did.
type Result struct {
	Dir      string   // absolute
	URL      string   // http://ADDRESS:PORT nodes reach the server at
	WWClient string   // the binary installed
	Notes    []string // what the admin should check
}

// Write writes the example tree o asks for.
func Write(o Options) (*Result, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := checkDir(dir, o.Force); err != nil {
		return nil, err
	}
	r := &Result{Dir: dir}
	addr, err := r.checkInputs(&o)
	if err != nil {
		return nil, err
	}
	files, err := renderTree(dir, addr, o.Listen)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, data := range files {
		// nodes.toml may hold asset keys.
		mode := os.FileMode(0o644)
		if name == config.NodesFile {
			mode = 0o600
		}
		if err := writeFileAll(filepath.Join(dir, filepath.FromSlash(name)), data, mode); err != nil {
			return nil, err
		}
	}
	if err := r.writeOverlays(dir); err != nil {
		return nil, err
	}
	if err := r.writeImage(dir, o.ImageFrom); err != nil {
		return nil, err
	}
	// The HTTPS certificate and its pin (kept when --force finds one).
	if _, err := tlscert.Create(dir, []string{addr}); err != nil && !errors.Is(err, tlscert.ErrExists) {
		return nil, err
	}
	r.URL = "http://" + net.JoinHostPort(addr, portOf(o.Listen))
	return r, nil
}

// checkInputs finds the wwclient binary and checks the address (guessing
// it when not given) and the image directory; it returns the address.
func (r *Result) checkInputs(o *Options) (string, error) {
	wwclient, err := findWWClient(o.WWClient)
	if err != nil {
		return "", err
	}
	r.WWClient = wwclient
	if interp := elfInterpreter(wwclient); interp != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("%s is dynamically linked (needs %s): it runs as /init before the image's libraries "+
			"are there, so build it static: CGO_ENABLED=0 go build ./wwclient", wwclient, interp))
	}
	addr := o.Address
	if addr == "" {
		addr = guessAddress()
		r.Notes = append(r.Notes, fmt.Sprintf("address = %q was guessed from this host's interfaces: check it in wwserver.toml (or pass --address)", addr))
	}
	if ip := net.ParseIP(addr); ip == nil || ip.To4() == nil {
		return "", fmt.Errorf("--address %q is not an IPv4 address", addr)
	}
	if o.ImageFrom != "" {
		if fi, err := os.Stat(o.ImageFrom); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("--image-from %q is not a directory", o.ImageFrom)
		}
	}
	return addr, nil
}

// renderTree renders the embedded tree's files (path in the tree → data),
// plus the built-in iPXE script as ipxe/example.ipxe.sample. It never
// returns a tree that does not load.
func renderTree(dir, addr, listen string) (map[string][]byte, error) {
	data := nodeAddresses(addr)
	data["Listen"] = listen
	files := map[string][]byte{"ipxe/example.ipxe.sample": []byte(bootscript.Builtin())}
	err := fs.WalkDir(treeFS, "tree", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		text, err := fs.ReadFile(treeFS, p)
		if err != nil {
			return err
		}
		if path.Ext(p) == ".toml" {
			if text, err = renderTemplate(string(text), data); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		files[strings.TrimPrefix(p, "tree/")] = text
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := config.ParseServer(filepath.Join(dir, config.ServerFile), files[config.ServerFile]); err != nil {
		return nil, fmt.Errorf("generated wwserver.toml is invalid: %w", err)
	}
	if _, err := config.ParseNodes(filepath.Join(dir, config.NodesFile), files[config.NodesFile]); err != nil {
		return nil, fmt.Errorf("generated nodes.toml is invalid: %w", err)
	}
	return files, nil
}

// writeOverlays writes the overlays and installs wwclient in wwinit.
func (r *Result) writeOverlays(dir string) error {
	if err := overlays.WriteAll(filepath.Join(dir, "overlays")); err != nil {
		return err
	}
	clientDst := filepath.Join(dir, "overlays", "wwinit", filepath.FromSlash(overlays.ClientBinary))
	if err := copyRegular(r.WWClient, clientDst, 0o755); err != nil {
		return fmt.Errorf("install wwclient: %w", err)
	}
	return nil
}

// writeImage copies the image from imageFrom, or writes the placeholder.
func (r *Result) writeImage(dir, imageFrom string) error {
	// images/ is root-only: image trees hold setuid-root programs.
	if _, _, err := image.SecureImagesDir(dir); err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "images", Image, "rootfs")
	if imageFrom != "" {
		if err := CopyTree(imageFrom, rootfs); err != nil {
			return fmt.Errorf("copy image: %w", err)
		}
		return nil
	}
	if err := writePlaceholderImage(rootfs); err != nil {
		return err
	}
	r.Notes = append(r.Notes, fmt.Sprintf("images/%s/rootfs is a placeholder and will not boot: replace it with a real root filesystem "+
		"(with a kernel at boot/vmlinuz-*), e.g. rerun with --image-from DIR --force", Image))
	return nil
}

// portOf is the port of a listen address (the default when it has none).
func portOf(listen string) string {
	if _, p, err := net.SplitHostPort(listen); err == nil && p != "" {
		return p
	}
	return fmt.Sprint(config.DefaultPort)
}

// checkDir refuses a non-empty dir unless force.
func checkDir(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if len(ents) > 0 && !force {
		return fmt.Errorf("%s is not empty; pass --force to write into it anyway (files init writes are overwritten)", dir)
	}
	return nil
}

// findWWClient returns the wwclient binary to install.
func findWWClient(flag string) (string, error) {
	p := flag
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("locate wwclient: %w; pass --wwclient PATH", err)
		}
		p = filepath.Join(filepath.Dir(exe), "wwclient")
		// The packages install the nodes' wwclient off the server's PATH:
		// /usr/sbin/wwserver finds /usr/lib/wwserver/wwclient.
		if pkg := filepath.Join(filepath.Dir(exe), "..", "lib", "wwserver", "wwclient"); !isRegular(p) && isRegular(pkg) {
			p = filepath.Clean(pkg)
		}
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		if flag == "" {
			return "", fmt.Errorf("no wwclient binary at %s (the default: next to wwserver); build it "+
				"(go build -o %s ./wwclient) or pass --wwclient PATH", p, p)
		}
		return "", fmt.Errorf("--wwclient %s: not a regular file", p)
	}
	return p, nil
}

func isRegular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// elfInterpreter is the dynamic loader an ELF executable asks for, "" for a
// static one (or a file that is not ELF).
func elfInterpreter(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
			if err != nil {
				return "a dynamic loader"
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

// guessAddress is the first IPv4 address of an up, non-loopback interface.
func guessAddress() string {
	ifs, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
					return ipn.IP.String()
				}
			}
		}
	}
	return "10.0.2.1"
}

// nodeAddresses picks example node addresses in the server's /24.
func nodeAddresses(addr string) map[string]string {
	ip := net.ParseIP(addr).To4()
	pick := func(last byte) string {
		if ip[3] == last {
			last += 100
		}
		return net.IPv4(ip[0], ip[1], ip[2], last).String()
	}
	return map[string]string{"Address": addr, "IP1": pick(11), "IP2": pick(12), "Image": Image}
}

func renderTemplate(text string, data any) ([]byte, error) {
	t, err := template.New("init").Parse(text)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeFileAll(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode) // WriteFile keeps an existing file's mode
}

func writePlaceholderImage(rootfs string) error {
	for _, d := range []string{"boot", "etc", "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777|os.ModeSticky); err != nil {
		return err
	}
	files := map[string]string{
		"boot/vmlinuz-0-placeholder": "REPLACE ME: this is not a kernel.\n" +
			"wwserver init wrote a placeholder image. Put a real root filesystem in this\n" +
			"directory (images/" + Image + "/rootfs), with its kernel at boot/vmlinuz-*.\n",
		"README": "This is a placeholder root filesystem written by `wwserver init`; nodes cannot boot it.\n\n" +
			"Replace images/" + Image + "/rootfs with a real root filesystem, for example:\n" +
			"  debootstrap bookworm images/" + Image + "/rootfs   (then install linux-image-amd64 in it)\n" +
			"  wwserver init DIR --force --image-from /path/to/rootfs\n" +
			"The kernel served is the newest rootfs/boot/vmlinuz-* (or nodes.toml's kernel = ...).\n",
		"etc/hostname": "placeholder\n",
	}
	for name, text := range files {
		if err := writeFileAll(filepath.Join(rootfs, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
