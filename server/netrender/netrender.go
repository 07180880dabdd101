// Package netrender renders a node's network devices (server/config NetDev)
// as the configuration files of the network stack its image uses:
// NetworkManager keyfiles, systemd-networkd .network/.netdev files, or
// ifupdown's /etc/network/interfaces; plus systemd .link files that name
// devices by MAC (read by udev in every systemd image, whichever stack runs).
// The wwinit overlay's templates call it through the "netfiles" function.
package netrender

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"github.com/wwcluster/ww/server/config"
)

// File is one rendered file: a plain name (the template's directory) and its content.
type File struct {
	Name    string
	Content string
}

// Kinds of files Files renders.
const (
	KindNetworkManager = "networkmanager"  // *.nmconnection, stack networkmanager only
	KindNetworkd       = "networkd"        // *.network, *.netdev, stack networkd only
	KindNetworkdEnable = "networkd-enable" // a multi-user.target drop-in wanting systemd-networkd
	KindLinks          = "links"           // *.link naming devices by MAC, every stack
	KindIfupdown       = "ifupdown"        // interfaces (only lo unless the stack is ifupdown)
	KindResolv         = "resolv"          // resolv.conf, when dns is set and NetworkManager does not write it
)

// Files returns the files of kind for node n, whose network devices are
// rendered for stack (a resolved stack: never auto).
func Files(kind, stack string, n *config.Node) ([]File, error) {
	switch kind {
	case KindNetworkManager:
		if stack != config.StackNetworkManager {
			return nil, nil
		}
		return networkManager(n), nil
	case KindNetworkd:
		if stack != config.StackNetworkd {
			return nil, nil
		}
		return networkd(n), nil
	case KindNetworkdEnable:
		if stack != config.StackNetworkd {
			return nil, nil
		}
		return []File{{"ww-networkd.conf", "# rendered by wwserver: network_stack is networkd\n[Unit]\nWants=systemd-networkd.service\n"}}, nil
	case KindLinks:
		return links(n), nil
	case KindIfupdown:
		return []File{{"interfaces", ifupdown(n, stack == config.StackIfupdown)}}, nil
	case KindResolv:
		if stack == config.StackNetworkManager || len(n.DNS) == 0 {
			return nil, nil
		}
		return []File{{"resolv.conf", resolvConf(n)}}, nil
	}
	return nil, fmt.Errorf("netfiles: unknown kind %q", kind)
}

// Paths that tell which stacks an image has (inside its rootfs; merged-/usr
// and split images).
var (
	nmPaths       = []string{"usr/sbin/NetworkManager"}
	ifupdownPaths = []string{"sbin/ifup", "usr/sbin/ifup"}
	networkdPaths = []string{"lib/systemd/systemd-networkd", "usr/lib/systemd/systemd-networkd"}
)

// Resolve returns the stack a node's devices are rendered for: configured
// unless it is auto (or unset); then, from what the image rootfs holds,
// NetworkManager if installed (it is enabled by its package wherever it is
// installed), else ifupdown if ifup is there, else systemd-networkd if its
// binary is there (it is then enabled by the overlay), else ifupdown (what
// the overlay always rendered). A few stat calls, no reads.
func Resolve(configured, rootfs string) string {
	if configured != "" && configured != config.StackAuto {
		return configured
	}
	if rootfs == "" {
		return config.StackIfupdown
	}
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return config.StackIfupdown
	}
	defer r.Close()
	has := func(paths []string) bool {
		for _, p := range paths {
			// Lstat: the entry is enough (busybox's ifup is an absolute link).
			if fi, err := r.Lstat(p); err == nil && !fi.IsDir() {
				return true
			}
		}
		return false
	}
	switch {
	case has(nmPaths):
		return config.StackNetworkManager
	case has(ifupdownPaths):
		return config.StackIfupdown
	case has(networkdPaths):
		return config.StackNetworkd
	}
	return config.StackIfupdown
}

// uuid is a stable UUID (version 5 layout, SHA-256 based) for a node's
// connection, so a re-rendered keyfile is the same connection to NetworkManager.
func uuid(node, dev string) string {
	h := sha256.Sum256([]byte("wwserver-nm\x00" + node + "\x00" + dev))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// cidr is "IP/PREFIX" from a dotted netmask (the address alone without one).
func cidr(ip, netmask string) string {
	if bits := config.PrefixLen(netmask); bits >= 0 {
		return fmt.Sprintf("%s/%d", ip, bits)
	}
	return ip
}

// isParent reports whether some vlan of n is on dev.
func isParent(n *config.Node, dev string) bool {
	for _, d := range n.Network {
		if d.Type == config.NetVLAN && d.Parent == dev {
			return true
		}
	}
	return false
}

// dnsSplit splits the node's DNS servers into IPv4 and IPv6 ones.
func dnsSplit(n *config.Node) (v4, v6 []string) {
	for _, s := range n.DNS {
		if strings.Contains(s, ":") {
			v6 = append(v6, s)
		} else {
			v4 = append(v4, s)
		}
	}
	return v4, v6
}

func resolvConf(n *config.Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# rendered by wwserver for %s (dns, search)\n", n.Name)
	if len(n.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(n.Search, " "))
	}
	for _, s := range n.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return b.String()
}

// connectedMode: IPoIB datagram mode carries at most 4092 bytes.
func connectedMode(d config.NetDev) bool { return d.MTU > 4092 }
