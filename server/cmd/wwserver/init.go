package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/image"
)

// The image init creates; nodes.toml's default profile uses it.
const initImage = "default"

type initOptions struct {
	dir       string
	wwclient  string
	imageFrom string
	address   string
	listen    string
	force     bool
}

func newInitCmd() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init DIR | --root DIR",
		Short: "Write a complete, commented example served tree to DIR",
		Long: `init writes a working served tree to DIR:

  wwserver.toml            every setting, commented (DHCP and TFTP present, disabled)
  nodes.toml               profile "default" and nodes n001, n002
  overlays/wwinit/         system overlay: /init (wwclient), wwclient.toml, network
  overlays/generic/        runtime overlay: hosts, accounts
  overlays/wwinit/usr/sbin/wwclient   copied from --wwclient
  images/default/rootfs/   copied from --image-from (like cp -a), else a placeholder
  ipxe/                    how to override the iPXE script

DIR must be empty or missing unless --force (which overwrites the files init
writes and leaves others alone).`,
		Example: `  wwserver init /var/lib/wwserver --image-from /srv/images/debian12 --address 10.0.2.1
  wwserver check /var/lib/wwserver
  wwserver serve /var/lib/wwserver`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !cmd.Flags().Changed("root") {
				return errors.New("init needs the directory to write: wwserver init DIR (or --root DIR)")
			}
			if err := takeTreeArg(cmd, &o.dir, args); err != nil {
				return err
			}
			return runInit(o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.dir, "root", "", "directory to write (the same as the DIR operand)")
	cmd.Flags().StringVar(&o.wwclient, "wwclient", "", "wwclient binary to install as /usr/sbin/wwclient and /init (default: wwclient next to this wwserver)")
	cmd.Flags().StringVar(&o.imageFrom, "image-from", "", "root filesystem to copy to images/default/rootfs (modes, owners, symlinks kept, like cp -a)")
	cmd.Flags().StringVar(&o.address, "address", "", "IPv4 address nodes use to reach this server (default: this host's first non-loopback IPv4)")
	cmd.Flags().StringVar(&o.listen, "listen", ":9873", "HTTP listen address written to wwserver.toml")
	cmd.Flags().BoolVar(&o.force, "force", false, "write into a non-empty DIR")
	return cmd
}

func runInit(o initOptions, out io.Writer) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := checkInitDir(dir, o.force); err != nil {
		return err
	}
	wwclient, err := findWWClient(o.wwclient)
	if err != nil {
		return err
	}
	var notes []string
	if interp := elfInterpreter(wwclient); interp != "" {
		notes = append(notes, fmt.Sprintf("%s is dynamically linked (needs %s): it runs as /init before the image's libraries "+
			"are there, so build it static: CGO_ENABLED=0 go build ./wwclient", wwclient, interp))
	}
	addr := o.address
	if addr == "" {
		addr = guessAddress()
		notes = append(notes, fmt.Sprintf("address = %q was guessed from this host's interfaces: check it in wwserver.toml (or pass --address)", addr))
	}
	if ip := net.ParseIP(addr); ip == nil || ip.To4() == nil {
		return fmt.Errorf("--address %q is not an IPv4 address", addr)
	}
	if o.imageFrom != "" {
		if fi, err := os.Stat(o.imageFrom); err != nil || !fi.IsDir() {
			return fmt.Errorf("--image-from %q is not a directory", o.imageFrom)
		}
	}

	serverText, err := renderInitTemplate(serverTOML, map[string]string{"Address": addr, "Listen": o.listen})
	if err != nil {
		return err
	}
	nodesText, err := renderInitTemplate(nodesTOML, nodeAddresses(addr))
	if err != nil {
		return err
	}
	// Never write a tree that does not load.
	if _, err := config.ParseServer(filepath.Join(dir, config.ServerFile), []byte(serverText)); err != nil {
		return fmt.Errorf("generated wwserver.toml is invalid: %w", err)
	}
	if _, err := config.ParseNodes(filepath.Join(dir, config.NodesFile), []byte(nodesText)); err != nil {
		return fmt.Errorf("generated nodes.toml is invalid: %w", err)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{config.ServerFile, serverText, 0o644},
		// nodes.toml may hold asset keys.
		{config.NodesFile, nodesText, 0o600},
		{"ipxe/README", ipxeReadme, 0o644},
		{"ipxe/example.ipxe.sample", bootscript.Builtin(), 0o644},
	}
	for _, f := range files {
		if err := writeFileAll(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	if err := overlays.WriteAll(filepath.Join(dir, "overlays")); err != nil {
		return err
	}
	clientDst := filepath.Join(dir, "overlays", "wwinit", filepath.FromSlash(overlays.ClientBinary))
	if err := copyRegular(wwclient, clientDst, 0o755); err != nil {
		return fmt.Errorf("install wwclient: %w", err)
	}
	// images/ is root-only: image trees hold setuid-root programs.
	if _, _, err := image.SecureImagesDir(dir); err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "images", initImage, "rootfs")
	if o.imageFrom != "" {
		if err := copyTree(o.imageFrom, rootfs); err != nil {
			return fmt.Errorf("copy image: %w", err)
		}
	} else {
		if err := writePlaceholderImage(rootfs); err != nil {
			return err
		}
		notes = append(notes, fmt.Sprintf("images/%s/rootfs is a placeholder and will not boot: replace it with a real root filesystem "+
			"(with a kernel at boot/vmlinuz-*), e.g. rerun with --image-from DIR --force", initImage))
	}

	fmt.Fprintf(out, "wrote a served tree to %s\n", dir)
	fmt.Fprintf(out, "  nodes reach this server at http://%s (edit wwserver.toml to change)\n", net.JoinHostPort(addr, portOf(o.listen)))
	fmt.Fprintf(out, "  wwclient: %s\n", wwclient)
	for _, n := range notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	fmt.Fprintf(out, "next: edit nodes.toml (MACs, addresses), then\n  wwserver check %s\n  wwserver serve %s\n", dir, dir)
	return nil
}

func portOf(listen string) string {
	if _, p, err := net.SplitHostPort(listen); err == nil && p != "" {
		return p
	}
	return fmt.Sprint(config.DefaultPort)
}

func checkInitDir(dir string, force bool) error {
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
	return map[string]string{"Address": addr, "IP1": pick(11), "IP2": pick(12), "Image": initImage}
}

func renderInitTemplate(text string, data any) (string, error) {
	t, err := template.New("init").Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
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
			"directory (images/" + initImage + "/rootfs), with its kernel at boot/vmlinuz-*.\n",
		"README": "This is a placeholder root filesystem written by `wwserver init`; nodes cannot boot it.\n\n" +
			"Replace images/" + initImage + "/rootfs with a real root filesystem, for example:\n" +
			"  debootstrap bookworm images/" + initImage + "/rootfs   (then install linux-image-amd64 in it)\n" +
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

// copyRegular copies one file's content to dst with mode.
func copyRegular(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// copyTree copies the tree at src to dst like cp -a: file types (regular,
// directory, symlink, device, FIFO), permission bits including setuid,
// setgid and sticky, owners (when running as root), hard links, extended
// attributes (best effort: file capabilities, SELinux labels) and
// modification times. Sockets are skipped. Symlinks are never followed.
func copyTree(src, dst string) error {
	src = filepath.Clean(src)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	asRoot := os.Geteuid() == 0
	links := map[[2]uint64]string{} // (dev, inode) → first copy, for hard links
	type dirMeta struct {
		path string
		st   *syscall.Stat_t
		src  string
	}
	var dirs []dirMeta
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat information", p)
		}
		perm := uint32(st.Mode) & 0o7777
		switch fi.Mode().Type() {
		case fs.ModeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirMeta{target, st, p})
			return nil
		case fs.ModeSymlink:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case 0: // regular
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok && st.Nlink > 1 {
				if err := removeExisting(target); err != nil {
					return err
				}
				return os.Link(first, target)
			}
			if err := copyRegular(p, target, 0o600); err != nil {
				return err
			}
			if st.Nlink > 1 {
				links[key] = target
			}
		case fs.ModeSocket:
			return nil
		default: // device or FIFO
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("mknod %s: %w", target, err)
			}
		}
		return applyMeta(p, target, st, perm, asRoot, fi.Mode().Type() == fs.ModeSymlink)
	})
	if err != nil {
		return err
	}
	// Directories last and deepest first, so adding entries does not touch
	// their times after they were set.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := applyMeta(d.src, d.path, d.st, uint32(d.st.Mode)&0o7777, asRoot, false); err != nil {
			return err
		}
	}
	return nil
}

func removeExisting(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// applyMeta sets owner, mode, extended attributes and times of target from
// src, in that order (chown clears setuid bits and file capabilities).
func applyMeta(src, target string, st *syscall.Stat_t, perm uint32, asRoot, symlink bool) error {
	if asRoot {
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if !symlink {
		if err := unix.Chmod(target, perm); err != nil {
			return fmt.Errorf("chmod %s: %w", target, err)
		}
	}
	copyXattrs(src, target)
	ts := []unix.Timespec{
		unix.NsecToTimespec(st.Atim.Nano()),
		unix.NsecToTimespec(st.Mtim.Nano()),
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", target, err)
	}
	return nil
}

// copyXattrs copies extended attributes, best effort like cp -a: a
// filesystem without them, or a namespace we may not write, is not an error.
func copyXattrs(src, dst string) {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size <= 0 {
		return
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(src, buf)
	if err != nil {
		return
	}
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(src, name, nil)
		if err != nil || n < 0 {
			continue
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(src, name, val); err != nil {
			continue
		}
		_ = unix.Lsetxattr(dst, name, val[:n], 0)
	}
}

const serverTOML = `# wwserver.toml: settings of wwserver, the node provisioning server.
# Edits are picked up while serving (a bad edit is logged and ignored, and
# /healthz says "degraded"); dhcp/tftp "enabled" and "listen" need a restart.
# Check this file with: wwserver check --root DIR

# IPv4 address the nodes use to reach this server (required). It goes into
# iPXE scripts, the kernel command line (wwserver=) and wwclient.toml.
address = "{{.Address}}"

# HTTP listen address, "[host]:port". Nodes are told this port.
listen = "{{.Listen}}"

# How often wwclient on each node sends a heartbeat and pulls the runtime
# overlay (a Go duration: "30s", "5m").
update_interval = "60s"

# Secure mode (recommended): the runtime overlay and heartbeats are accepted
# only from privileged source ports (< 1024), i.e. from root on the node, so
# node users cannot read it. iPXE cannot use such a port, so in secure mode
# the runtime overlay is not part of the iPXE boot: wwclient pulls it right
# after boot. A node with an asset_key must also send it (secure or not).
secure = true

# Secure mode also answers a node's runtime overlay and heartbeats only from
# the node's own address: its nodes.toml ipaddr or its DHCP lease (a node
# with neither is not checked). Refusals answer 403 WRONG_SOURCE. Set false
# when nodes reach the server through NAT or a relay.
source_check = true

# Built-in DHCP server. Leave disabled when another DHCP server hands out
# addresses and PXE options (point its boot file at iPXE and iPXE at
# http://ADDRESS:PORT/ipxe/${mac}).
[dhcp]
enabled = false
# "reservation": answer known nodes with their nodes.toml address (and the
#                range below for unknown machines, if set).
# "proxy":       ProxyDHCP; another server hands out addresses, this one only
#                the boot information.
mode = "reservation"
# Interface to serve on (bound with SO_BINDTODEVICE); required when enabled.
interface = "br0"
# DHCP listen address.
listen = ":67"
# Optional pool for machines that are not in nodes.toml (both or neither).
range_start = ""
range_end = ""
# Netmask, router, DNS servers and domain handed to nodes.
netmask = "255.255.255.0"
router = ""
dns = []
domain = ""
# Lease length.
lease_time = "1h"
# Boot files by client architecture (DHCP option 93): BIOS, x86-64 UEFI,
# arm64 UEFI, and UEFI HTTP boot clients (served from /ipxe-bin/).
bios_file = "undionly.kpxe"
efi_file = "snponly.efi"
arm64_file = ""
http_boot_file = "ipxe.efi"
# Packet-handling workers.
workers = 8
# iPXE does not finish "Configuring (net0 ...)" until IPv6 autoconfiguration
# ends: on a network without an IPv6 router it sends router solicitations for
# ~16 s. wwserver answers them on the interface above with a router
# advertisement that announces nothing (router lifetime 0, no prefixes, no
# DHCPv6), which ends the wait at once. "auto": only while no other IPv6 router
# advertises on the interface (one that does answers iPXE itself); true:
# always; false: never (e.g. when policy forbids a host sending router
# advertisements: RFC 4861 reserves them for routers).
answer_router_solicitations = "auto"

# Built-in read-only TFTP server for the iPXE binaries (also served over HTTP
# at /ipxe-bin/ for UEFI HTTP boot).
[tftp]
enabled = false
# TFTP listen address.
listen = ":69"
# Directory with the iPXE binaries (Debian: apt install ipxe).
dir = "/usr/lib/ipxe"
# Sliding window: packets sent ahead of acknowledgements (1..64).
anticipate = 8
`

const nodesTOML = `# nodes.toml: the nodes and the profiles they share.
# A node's settings are its profiles' merged in order, then its own (node wins).
# Edits are picked up while serving. Check with: wwserver check --root DIR
# List the resolved nodes with: wwserver nodes --root DIR

[profiles.default]
# Image: images/NAME/rootfs in this tree. The kernel is its newest boot/vmlinuz-*.
image = "{{.Image}}"
# Extra kernel command line (wwid=, wwserver= and wwroot= are added for you).
# It goes into the iPXE boot line, so control characters and iPXE's ${ && || ; #
# are refused.
kernel_args = ["console=ttyS0", "console=tty0"]
# Overlays, from overlays/NAME: system overlays are sent once at boot, runtime
# overlays at boot and then every update_interval. Files ending in .ww are
# templates rendered per node.
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]
# Root filesystem: "tmpfs" (copied to a tmpfs, then switch_root) or
# "initramfs" (stay in the initramfs).
root = "tmpfs"

[nodes.n001]
profiles = ["default"]
# Optional secret; when set, the runtime overlay and heartbeats need it
# (?assetkey=). wwclient reads it from the node's SMBIOS chassis asset tag
# (set in the firmware setup; QEMU: -smbios type=3,asset=KEY), so it never
# travels in a served overlay.
asset_key = ""
# Optional iPXE template: ipxe/NAME.ipxe in this tree (see ipxe/README).
ipxe_template = ""
# Optional kernel path inside the image rootfs, e.g. "boot/vmlinuz-6.1.0-28-amd64".
kernel = ""
# Free-form tags, available to overlay templates as .Node.Tags.
[nodes.n001.tags]
rack = "r1"
# Network devices by name. hwaddr is the MAC the node PXE boots from; ':' or
# '-', any case. One device may be primary (default: the first by name).
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "{{.IP1}}"
netmask = "255.255.255.0"
gateway = ""
primary = true

[nodes.n002]
profiles = ["default"]
[nodes.n002.tags]
rack = "r1"
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "{{.IP2}}"
netmask = "255.255.255.0"
`

const ipxeReadme = `iPXE script templates

By default every node gets wwserver's built-in iPXE script (example.ipxe.sample
here is a copy of it). To change it for some nodes, copy it to NAME.ipxe in this
directory and set ipxe_template = "NAME" on those nodes or on their profile.

Templates are Go text/template. Fields: .Node (the resolved node: .Node.Name,
.Node.KernelArgs, ...), .MAC, .Server.Address/.Port/.URL/.Secure, .KernelURL,
.ImageURL, .SystemOverlayURL, .RuntimeOverlayURL, .FetchRuntime, .KernelArgs,
.BootArgs, .Initrds, .Fetches (each with .URL and .Fallbacks, the same file at
the other live servers), .ServerURLs, .Retries. Functions: join, lower, upper.
Every value a template prints is checked: one that iPXE would read as more
than a value (a control character, "${", or a word "||", "&&", ";" or "#...")
fails the render (the node gets a 500) instead of becoming iPXE commands.

Edits are used on the next boot; see the result with
  wwserver render ipxe NODE --root DIR
`
